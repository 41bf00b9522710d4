//! The calculator tool against nanochat's `use_calculator` (reference §5.4): the 61 golden
//! cases of `outputs/calculator_cases.json`, more cases whose expected text was produced by
//! nanochat's `use_calculator` under CPython 3.11, the filter, the limits, and a robustness run
//! over random and adversarial inputs (no panic, bounded time and stack).

use std::time::{Duration, Instant};

use nanochat_engine::calculator::{evaluate, use_calculator, CalcError, CalcValue, MAX_EXPR_BYTES};
use nanochat_fixtures::fixture_json;

/// `2**1024 - 2**970 - 1`: the largest int that still rounds to a finite float (f64::MAX).
const LARGEST_FINITE_INT: &str = concat!(
    "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017",
    "977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273",
    "854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704",
    "342711559699508093042880177904174497791"
);

fn check(cases: &[(String, Option<String>)]) {
    let failures: Vec<String> = cases
        .iter()
        .filter(|(expr, want)| use_calculator(expr) != *want)
        .map(|(expr, want)| {
            let got = evaluate(expr);
            format!(
                "{expr:?}: want {want:?}, got {:?} ({got:?})",
                use_calculator(expr)
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn owned(cases: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    cases
        .iter()
        .map(|(e, r)| (e.to_string(), r.map(str::to_string)))
        .collect()
}

#[test]
fn all_61_fixture_cases_match_nanochat() {
    let fixture = fixture_json("outputs/calculator_cases.json");
    let cases = fixture["cases"]
        .as_array()
        .expect("calculator_cases.json has a cases array");
    assert_eq!(
        cases.len(),
        61,
        "calculator_cases.json should hold 61 cases"
    );
    let mut expected = Vec::new();
    for case in cases {
        let expr = case["expr"].as_str().expect("case expr is a string");
        let want = case["result_str"].as_str().map(str::to_string);
        let result_type = case["result_type"]
            .as_str()
            .expect("case result_type is a string");
        if let (Ok(value), Some(_)) = (evaluate(expr), &want) {
            assert_eq!(value.type_name(), result_type, "Python type of {expr:?}");
        }
        expected.push((expr.to_string(), want));
    }
    check(&expected);
}

#[test]
fn matches_python_beyond_the_fixture() {
    check(&owned(&[
        ("0/-5", Some("-0.0")),
        ("-0/5", Some("0.0")),
        ("()+()", Some("()")),
        ("()*3", Some("()")),
        ("3*()", Some("()")),
        ("()*-1", Some("()")),
        ("()*9223372036854775807", Some("()")),
        ("()*9223372036854775808", None),
        ("()*-9223372036854775808", Some("()")),
        ("...", Some("Ellipsis")),
        ("(...)", Some("Ellipsis")),
        ("1...", None),
        ("-...", None),
        ("()//1", None),
        ("2* *3", None),
        ("((()))", Some("()")),
        ("()()", None),
        ("0.1+()", None),
        ("-()", None),
        ("+0.0", Some("0.0")),
        ("-0.0+0", Some("0.0")),
        ("0.0*-1", Some("-0.0")),
        ("-0//1", Some("0")),
        ("-0.0//1", Some("-0.0")),
        ("7.//-2", Some("-4.0")),
        ("1/3//1", Some("0.0")),
        (". 5", None),
        ("1 .5", None),
        ("00.5", Some("0.5")),
        ("012.5", Some("12.5")),
        ("012.", Some("12.0")),
        ("000", Some("0")),
        ("0.0//0.0", None),
        ("5.//0", None),
        ("5//0", None),
        ("5.0/0", None),
        ("0/0.0", None),
        ("1.//.3", Some("3.0")),
        ("-1.//.3", Some("-4.0")),
        ("1e-5", None),
        ("0.00001", Some("1e-05")),
        ("0.0001", Some("0.0001")),
        ("1/10000", Some("0.0001")),
        ("1/100000", Some("1e-05")),
        ("10000000000000000.0", Some("1e+16")),
        ("9999999999999998.0", Some("9999999999999998.0")),
        ("1000000000000000.0*10", Some("1e+16")),
        ("123456789012345678.0", Some("1.2345678901234568e+17")),
        ("2/3*1000000000000000000000", Some("6.666666666666666e+20")),
        ("9007199254740993/1", Some("9007199254740992.0")),
        ("9007199254740993*1.0", Some("9007199254740992.0")),
        ("18014398509481987/2", Some("9007199254740994.0")),
        ("(9007199254740992+1)/1", Some("9007199254740992.0")),
        ("1/3*3", Some("1.0")),
        (
            "123456789123456789123456789/1000000000000000000",
            Some("123456789.12345679"),
        ),
        ("-100000000000000000000/3", Some("-3.333333333333333e+19")),
        ("100000000000000000000/-3", Some("-3.333333333333333e+19")),
        ("-100000000000000000000//3", Some("-33333333333333333334")),
        (
            "99999999999999999999999999999999//7",
            Some("14285714285714285714285714285714"),
        ),
        ("7//-2", Some("-4")),
        ("-7//-2", Some("3")),
        ("7.5//-2", Some("-4.0")),
        ("-7.5//2", Some("-4.0")),
        ("0.1*0.1", Some("0.010000000000000002")),
        ("( 1 + 2 ) * ( 3 - 4 ) // 5", Some("-1")),
        ("1+2*3-4/5", Some("6.2")),
        ("8/2/2", Some("2.0")),
        ("8//3//2", Some("1")),
        ("2*3//4", Some("1")),
        ("-(1)", Some("-1")),
        ("-(-(-(1)))", Some("-1")),
        ("- - - 1.5", Some("-1.5")),
        ("+()", None),
        ("1.5.2", None),
        ("1..2", None),
        ("..5", None),
        ("...5", None),
        ("....", None),
        ("(.5)", Some("0.5")),
        ("5.e", None),
        ("1 + ", None),
        ("* 2", None),
        ("/2", None),
        ("2//", None),
        ("()1", None),
        ("1()", None),
        ("(1)(2)", None),
        ("(1) 2", None),
        ("0//1.0", Some("0.0")),
        ("-0.0//-1", Some("0.0")),
        ("0.0/-1", Some("-0.0")),
        ("-5//10", Some("-1")),
        ("5//-10", Some("-1")),
        ("-5.0//10", Some("-1.0")),
        ("1-1", Some("0")),
        ("3-3.0", Some("0.0")),
        ("0*-1", Some("0")),
        ("0*-1.0", Some("-0.0")),
        ("-(0)", Some("0")),
        ("-(0.0)", Some("-0.0")),
        ("'''a'b'''.count('a')", Some("1")),
        ("'a' 'b'.count('b')", Some("1")),
        ("r'ab'.count('a')", Some("1")),
        ("'a'.count('a') if True else lambda", None),
        ("'a'.count('a') if True else x", Some("1")),
        ("x if False else 'a'.count('a')", Some("1")),
        ("'a'.count('a') if None else 'b'", Some("b")),
        ("'a'.count('a') if 0 else ()", Some("()")),
        ("None if 1 else 'a'.count('')", None),
        ("True.bit_length() if 'a'.count('') else 0", Some("1")),
        ("'aaaa'.count('aa').bit_length()", Some("2")),
        ("1.count('a')", None),
        ("'x.count(y)'", Some("x.count(y)")),
        ("'abc'.count('a') if 1. else 0", Some("1")),
        ("'abc'.count('a') if .0 else 0", Some("0")),
        ("'abc'.count('a') if ... else 0", Some("1")),
        ("'ab'.count('a')if True else 0", Some("1")),
        ("('ab'.count)('a')", None),
        ("'a'.count('a') if True else 1 if False else 2", Some("1")),
        ("'a'.count('a') if False else 1 if False else 2", Some("2")),
        ("('a' if True else 'b').count('a')", Some("1")),
        ("'a'.count(('a'))", Some("1")),
        ("'a'.count()", None),
        ("'a'.count(1)", None),
        ("'a'.count('a') . bit_length ()", Some("1")),
        ("''.count('')", Some("1")),
        ("''.count('a')", Some("0")),
        ("'aaaaa'.count('aa')", Some("2")),
        ("'abababa'.count('aba')", Some("2")),
        ("\"it's\".count(\"'\")", Some("1")),
        ("'say \"hi\"'.count('\"')", Some("2")),
        ("'a'.count('a')(1)", None),
        ("'a'.count('a').count('a')", None),
        ("().count(1) if True else 0", Some("0")),
        ("().count()", None),
        ("'a'.count(x)", None),
        ("'a'.count('b' if False else 'a')", Some("1")),
        ("'a'.count('a') if '' else False", Some("False")),
        ("'a'.count('a') if 'x' else None", Some("1")),
        ("(('a')).count((('a')))", Some("1")),
        ("'a'.count('a' 'a')", Some("0")),
        ("'aa'.count('a' 'a')", Some("1")),
        ("'a'.count('a') if True", None),
        ("'a'.count('a') else 0", None),
        ("'a'.count('a') if True else", None),
        ("'a.count(b)'.count('.count(')", Some("1")),
        ("'a'.count('a') if True else 0 if", None),
        ("'a'.count('a')1", None),
        ("'a'.count('a') 'b'", None),
        ("'a'.count('a'", None),
        ("'a'.count('a'))", None),
        ("'a.count('", Some("a.count(")),
        ("\"a\".count('a\")", None),
        ("'1e5'.count('e')", Some("1")),
        ("'a'.count('a') if 012 else 2", None),
        ("'a'.count('a') if 00 else 2", Some("2")),
        ("'a'.count('a') if True else None", Some("1")),
        ("None if True else 'a'.count('a')", None),
        ("'The quick brown fox'.count('o')", Some("2")),
        ("'mississippi'.count('ss')", Some("2")),
        ("'mississippi'.count('issi')", Some("1")),
        ("True if 'a'.count('a') else False", Some("True")),
        ("False if 'a'.count('a') else True", Some("False")),
        ("'' if 'a'.count('a') else 1", Some("")),
        ("'abc' if 'a'.count('a') else 1", Some("abc")),
        ("() if 'a'.count('a') else 1", Some("()")),
        ("... if 'a'.count('a') else 1", Some("Ellipsis")),
        ("1.5 if 'a'.count('a') else 1", Some("1.5")),
        (
            "100000000000000000000 if 'a'.count('a') else 1",
            Some("100000000000000000000"),
        ),
        ("'a'.count('a').bit_length().bit_length()", Some("1")),
        ("'aaaaaaaaaaaaaaaa'.count('a').bit_length()", Some("5")),
        ("'a'.count('a') if True else 1 if True else 2", Some("1")),
        ("'x'.count('x')*2", None),
        ("'count'.count('count')", Some("1")),
        ("'a'.count('a')if'a'else 0", Some("1")),
        ("'a'.count('a')if 'a'else 0", Some("1")),
        ("'a'.count(\"a\")", Some("1")),
        ("'a'.count('a') if(True)else(0)", Some("1")),
        ("('a').count('a')if(1)else(x)", Some("1")),
    ]));
}

#[test]
fn floats_print_like_python_repr() {
    check(&owned(&[
        ("0.1+0.2", Some("0.30000000000000004")),
        ("0.0001", Some("0.0001")),
        ("0.00001", Some("1e-05")),
        ("0.000012345", Some("1.2345e-05")),
        ("1000000000000000.0", Some("1000000000000000.0")),
        ("9999999999999998.0", Some("9999999999999998.0")),
        ("10000000000000000.0", Some("1e+16")),
        ("12345678901234567890.0", Some("1.2345678901234567e+19")),
        ("100000000000000000000/3", Some("3.333333333333333e+19")),
        ("1/1024/1024/1024", Some("9.313225746154785e-10")),
        // Exact ties between two shortest digit strings go to the even digit, as in Python
        // (Rust's shortest formatting would print ...890.3 and ...819.13).
        ("641118262435890.3", Some("641118262435890.2")),
        ("-91107927596819.1201970685616", Some("-91107927596819.12")),
        (
            "2.276319749504045374 + 2092360827594.00492343244945278",
            Some("2092360827596.2812"),
        ),
        ("-0.0", Some("-0.0")),
        ("0.0*-1", Some("-0.0")),
        ("0/-5", Some("-0.0")),
        ("-0.0//1", Some("-0.0")),
        ("-0.0+0", Some("0.0")),
    ]));
}

#[test]
fn int_true_division_is_correctly_rounded() {
    let zeros = |n: usize| "0".repeat(n);
    check(&[
        (
            "9007199254740993/1".into(),
            Some("9007199254740992.0".into()),
        ),
        (
            "18014398509481987/2".into(),
            Some("9007199254740994.0".into()),
        ),
        (
            "9007199254740993*1.0".into(),
            Some("9007199254740992.0".into()),
        ),
        (
            "123456789123456789123456789/1000000000000000000".into(),
            Some("123456789.12345679".into()),
        ),
        (
            "-100000000000000000000/3".into(),
            Some("-3.333333333333333e+19".into()),
        ),
        // Subnormal quotients, rounded once (2.5e-324 rounds up to the smallest subnormal).
        (format!("1/1{}", zeros(310)), Some("1e-310".into())),
        (format!("3/1{}", zeros(323)), Some("3e-323".into())),
        (format!("5/1{}", zeros(324)), Some("5e-324".into())),
        (format!("25/1{}", zeros(325)), Some("5e-324".into())),
        (format!("1/1{}", zeros(330)), Some("0.0".into())),
        (format!("1{}", "/1024".repeat(107)), Some("8e-323".into())),
        // The float range's top: Python raises OverflowError beyond it.
        (format!("1{}/1", zeros(308)), Some("1e+308".into())),
        (
            format!("{LARGEST_FINITE_INT}/1"),
            Some("1.7976931348623157e+308".into()),
        ),
        (
            format!("{LARGEST_FINITE_INT}*1.0"),
            Some("1.7976931348623157e+308".into()),
        ),
        (format!("({LARGEST_FINITE_INT}+1)/1"), None),
        (format!("1{}/1", zeros(309)), None),
        (format!("1{}*1.0", zeros(309)), None),
        (format!("1{}-1.0", zeros(309)), None),
        (format!("9{}//1.0", "9".repeat(399)), None),
        (format!("()*1{}", zeros(30)), None),
        // Float literals overflow to inf silently; inf arithmetic gives nan.
        (format!("1{}.0", zeros(400)), Some("inf".into())),
        (format!("-1{}.0", zeros(400)), Some("-inf".into())),
        (format!("1{0}.0-1{0}.0", zeros(400)), Some("nan".into())),
        (format!("1{}.0*0", zeros(400)), Some("nan".into())),
        (format!("1{}.0//1", zeros(400)), Some("nan".into())),
        (format!("1{0}.0*1{0}.0", zeros(300)), Some("inf".into())),
    ]);
}

#[test]
fn nesting_limits_are_cpythons() {
    let nest =
        |depth: usize, inner: &str| format!("{}{inner}{}", "(".repeat(depth), ")".repeat(depth));
    check(&[
        (nest(200, "1"), Some("1".into())),
        (nest(201, "1"), None),
        (nest(199, "()"), Some("()".into())),
        (format!("{}1", "-".repeat(999)), Some("-1".into())),
        (format!("1{}", "+1".repeat(499)), Some("500".into())),
        // CPython 3.11's parser stack: 28 frames per open parenthesis, one per pending sign.
        (
            nest(200, &format!("{}1", "-".repeat(375))),
            Some("-1".into()),
        ),
        (nest(200, &format!("{}1", "-".repeat(376))), None),
        (
            nest(195, &format!("{}1", "-".repeat(515))),
            Some("-1".into()),
        ),
        (nest(195, &format!("{}1", "-".repeat(516))), None),
    ]);
    assert!(matches!(
        evaluate(&nest(201, "1")),
        Err(CalcError::Syntax(_))
    ));
}

#[test]
fn filter_rejects_like_nanochat() {
    for expr in [
        "2**10",
        "2 ** 10",
        "len('abc')",
        "'abc'.upper()",
        "__import__('os')",
        "'open'.count('o')",
        "'dir'.count('d')",
        "'Import'.count('I')",
        "'profile'.count('f')",
        "'x'.count('x')*2",
        "'a'.count('a')+1",
        "'é'.count('é')",
        "1+1\n",
        "1\t+1",
        "{}",
        "[1]",
    ] {
        assert!(
            matches!(evaluate(expr), Err(CalcError::Rejected(_))),
            "{expr:?}: {:?}",
            evaluate(expr)
        );
        assert_eq!(use_calculator(expr), None, "{expr:?}");
    }
    // Commas go first, even inside string literals.
    assert_eq!(use_calculator("'ab,c'.count(',')").as_deref(), Some("4"));
    assert_eq!(use_calculator("1,000,000*3").as_deref(), Some("3000000"));
}

#[test]
fn forms_python_evaluates_but_the_port_does_not_model_give_none() {
    // Python evaluates all of these (values in comments); the port says Unsupported -> None.
    for expr in [
        "'A'.lower().count('a')",                  // 1
        "'a'.count('a').real",                     // 1
        "'a'.count('a') if 0x0 else 2",            // 2
        "'a'.count('a') if 1_0 else 2",            // 1
        "'a'.count('a') if not True else 2",       // 2
        "'a'.count('a') if True and False else 2", // 2
        "'a'.count('a') if True else 'a' in 'b'",  // 1
        "b'ab'.count(b'a')",                       // 1
    ] {
        assert!(
            matches!(evaluate(expr), Err(CalcError::Unsupported(_))),
            "{expr:?}: {:?}",
            evaluate(expr)
        );
        assert_eq!(use_calculator(expr), None, "{expr:?}");
    }
}

#[test]
fn values_and_errors() {
    assert_eq!(
        evaluate("'abc'.count('a') if True else 0"),
        Ok(CalcValue::Int(1.into()))
    );
    assert_eq!(evaluate("3.5//1"), Ok(CalcValue::Float(3.0)));
    assert_eq!(evaluate("()").map(|v| v.type_name()), Ok("tuple"));
    assert_eq!(
        evaluate("...").map(|v| v.to_string()).as_deref(),
        Ok("Ellipsis")
    );
    // A result that is Python's None injects nothing.
    assert_eq!(
        evaluate("None if 'a'.count('a') else 0"),
        Ok(CalcValue::None)
    );
    assert_eq!(use_calculator("None if 'a'.count('a') else 0"), None);
    assert!(matches!(evaluate("1/0"), Err(CalcError::Eval(_))));
    assert!(matches!(evaluate("x.count(1)"), Err(CalcError::Eval(_))));
    assert!(matches!(evaluate("012"), Err(CalcError::Syntax(_))));
    assert!(matches!(
        evaluate(&"1".repeat(MAX_EXPR_BYTES + 1)),
        Err(CalcError::Limit(_))
    ));
    assert_eq!(
        use_calculator(&"1".repeat(MAX_EXPR_BYTES)),
        Some("1".repeat(MAX_EXPR_BYTES))
    );
}

/// xorshift64*: a fixed, dependency-free stream of pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    fn string(&mut self, pieces: &[&str], max_pieces: usize) -> String {
        let n = self.below(max_pieces + 1);
        (0..n).map(|_| pieces[self.below(pieces.len())]).collect()
    }
}

fn adversarial_inputs() -> Vec<String> {
    let mut inputs: Vec<String> = vec![
        "(".repeat(10_000),
        ")".repeat(10_000),
        "(".repeat(999),
        format!("{}{}", "(".repeat(500), ")".repeat(500)),
        format!("{}1{}", "(-".repeat(200), ")".repeat(200)),
        format!("{}1{}", "(1+".repeat(199), ")".repeat(199)),
        format!("{}'a'.count('a'){}", "(".repeat(200), ")".repeat(200)),
        format!("{}'a'{}", "'a'.count(".repeat(90), ")".repeat(90)),
        format!("{}1", "1 if 1 else ".repeat(90)),
        format!("{}1", "-".repeat(999)),
        format!("{}1", "-".repeat(10_000)),
        "9".repeat(1000),
        format!("{}*{}", "9".repeat(499), "9".repeat(500)),
        format!("{}9", "99*".repeat(333)),
        format!("{}1", "1/".repeat(499)),
        format!("{}3", "7//".repeat(333)),
        format!("{}1.5", "1.5*".repeat(249)),
        format!("{}1", "()*".repeat(333)),
        format!("'{}'.count('')", "a".repeat(980)),
        format!("'{}'.count('{}')", "ab".repeat(240), "ab".repeat(240)),
        format!("{}.count('a')", "'a'".repeat(320)),
        format!("'a'.count('a'){}", ".bit_length()".repeat(70)),
        "'''".repeat(300),
        "\"".repeat(999),
        ".".repeat(999),
        "0".repeat(999),
        format!("0{}", "1".repeat(998)),
        "'a'.count('a') if ".repeat(50),
    ];
    let numeric: Vec<&str> = vec!["0", "1", "2", "9", "*", "+", "-", "/", ".", "(", ")", " "];
    let letters = vec![
        "a", "B", "_", "'", "\"", "(", ")", ".", " ", "0", "1", ".count(",
    ];
    let soup = [
        "'a'",
        "\"b\"",
        "''",
        ".count(",
        "(",
        ")",
        " if ",
        " else ",
        "True",
        "False",
        "None",
        "x",
        "1",
        "0",
        "00",
        "1.5",
        ".",
        "...",
        "-",
        "+",
        "*",
        "/",
        "//",
        "()",
        ".bit_length()",
        "'''",
        "r'a'",
        "not",
        " ",
        ",",
        "**",
        "e5",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..4000 {
        inputs.push(rng.string(&numeric, 40));
        inputs.push(rng.string(&letters, 40));
        inputs.push(rng.string(&soup, 25));
        inputs.push(format!(
            "'{}'.count({})",
            rng.string(&soup, 6),
            rng.string(&soup, 6)
        ));
    }
    inputs
}

#[test]
fn random_and_adversarial_inputs_return_quickly_without_panicking() {
    let inputs = adversarial_inputs();
    // A modest explicit stack: the parser recurses only through parentheses (at most 200).
    let worker = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let started = Instant::now();
            let mut slowest = (Duration::ZERO, String::new());
            for expr in &inputs {
                let t = Instant::now();
                let result = use_calculator(expr);
                let elapsed = t.elapsed();
                if let Some(text) = &result {
                    assert!(
                        expr.len() <= MAX_EXPR_BYTES && text.len() <= 4 * MAX_EXPR_BYTES,
                        "{expr:?}"
                    );
                }
                if elapsed > slowest.0 {
                    slowest = (elapsed, expr.chars().take(60).collect());
                }
            }
            (inputs.len(), started.elapsed(), slowest)
        });
    let (count, total, slowest) = worker
        .expect("spawn")
        .join()
        .expect("no panic on any input");
    assert!(count > 16_000);
    assert!(
        slowest.0 < Duration::from_secs(1),
        "slowest input took {:?}: {:?}",
        slowest.0,
        slowest.1
    );
    assert!(
        total < Duration::from_secs(30),
        "{count} inputs took {total:?}"
    );
}
