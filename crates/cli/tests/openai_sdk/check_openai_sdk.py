"""Drives `nanochat serve` with the official `openai` Python SDK, as a real client would.

Each suite is a list of `check_*` functions run in order against one running server; every
check prints `ok NAME` or `FAIL NAME: reason` with its traceback, so one failure does not hide
the others, and the script exits 1 if any check failed.

Suites (each needs the server started with the flags named):
  main    `--max-model-len 640 --sim-ttft-ms 0 --sim-itl-ms 0`: model listing, simulated models
          (text, echo, seeds, streaming shape, usage, n, timing extensions, tools, JSON schema,
          the SDK's `parse` helper), nanochat checkpoints (sft-d1's greedy answer from the
          golden fixture, stop, length, logprobs, legacy completions, content parts, constrained
          tools and JSON on sft-d2), and the SDK's exception classes for bad requests.
  auth    `--api-key sekret`: wrong key refused, right key accepted, /health and /ready open.
  fault   `--failure-rate 100 --failure-types T`, with `--fault T`: every chat completion
          fails with the SDK exception class, status, code and headers OpenAI uses for T.
  limits  `--max-request-bytes 10000`: a 20 kB request gets 413, a small one still works.

Run (the Rust test crates/cli/tests/openai_sdk.rs does this):
  python check_openai_sdk.py --base-url http://127.0.0.1:PORT/v1 --fixtures DIR --suite main
"""

import argparse
import json
import sys
import time
import traceback

import openai
import pydantic

try:
    import httpx
except ImportError:  # openai 3.x depends on httpx2 instead
    import httpx2 as httpx

ARGS = None
SIM = "gpt-sim-1"
SIM_MODELS = ["gpt-sim-1", "gpt-4o", "gpt-3.5-turbo"]
REAL_MODELS = ["base-d2", "mid-d2", "sft-d1", "sft-d2", "sft-d3", "rl-d1"]
QUESTION = "What is 12*34?"

# A tool and a schema whose every value is bounded, so that a small model under constrained
# decoding always finishes them within ~200 tokens.
BOUNDED_SCHEMA = {
    "type": "object",
    "properties": {
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "alerts": {"type": "boolean"},
    },
    "required": ["unit", "days", "alerts"],
    "additionalProperties": False,
}
BOUNDED_TOOL = {
    "type": "function",
    "function": {
        "name": "get_forecast",
        "description": "Weather forecast for the next days.",
        "parameters": BOUNDED_SCHEMA,
    },
}
RICH_SCHEMA = {  # for simulated models, which may fill in any schema
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "population": {"type": "integer", "minimum": 0},
        "coastal": {"type": "boolean"},
        "districts": {"type": "array", "items": {"type": "string"}},
        "mayor": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "number"}},
            "required": ["name", "age"],
            "additionalProperties": False,
        },
    },
    "required": ["city", "population", "coastal", "districts", "mayor"],
    "additionalProperties": False,
}


# ---------------------------------------------------------------------------------------------
# Helpers


def client(api_key="sk-no-key-needed"):
    return openai.OpenAI(
        base_url=ARGS.base_url,
        api_key=api_key,
        max_retries=0,
        timeout=60.0,
        # Loopback only: never route through a proxy from the environment.
        http_client=openai.DefaultHttpxClient(trust_env=False, timeout=60.0),
    )


def root_url():
    """The server's root (the base URL without its /v1)."""
    base = ARGS.base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def fixture_answer():
    """sft-d1's greedy answer to QUESTION, as nanochat's chat_web streamed it."""
    with open(f"{ARGS.fixtures}/outputs/chat_web_transcripts.json", encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    case = next(c for c in cases if c["name"] == "tool_use_greedy")
    assert case["request_json"]["messages"] == [{"role": "user", "content": QUESTION}]
    text = ""
    for line in case["body"].split("\n"):
        if line.startswith("data: "):
            event = json.loads(line[len("data: "):])
            text += event.get("token", "")
    assert text, "empty fixture answer"
    return text


def ask(model=SIM, content=QUESTION, **kw):
    return client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], **kw
    )


def stream_chunks(model=SIM, content=QUESTION, **kw):
    return list(ask(model, content, stream=True, **kw))


def stream_text(chunks, index=0):
    return "".join(
        c.delta.content or "" for ch in chunks for c in ch.choices if c.index == index
    )


def check_usage(usage, exact_completion=None):
    assert usage is not None, "no usage"
    assert usage.prompt_tokens >= 1, usage
    assert usage.completion_tokens >= 1, usage
    assert usage.prompt_tokens + usage.completion_tokens == usage.total_tokens, usage
    if exact_completion is not None:
        assert usage.completion_tokens == exact_completion, usage


def check_envelope(resp):
    """Common fields of a non-streamed chat completion."""
    assert resp.id.startswith("chatcmpl-"), resp.id
    assert resp.object == "chat.completion", resp.object
    assert isinstance(resp.created, int) and resp.created > 1_600_000_000, resp.created
    assert (resp.system_fingerprint or "").startswith("fp_"), resp.system_fingerprint
    check_usage(resp.usage)


def validate(value, schema, path="$"):
    """A small JSON Schema check: the keywords the schemas in this file use."""
    kind = schema.get("type")
    types = {
        "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
    }
    if kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: {value!r}"
    elif kind == "number":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: {value!r}"
    elif kind is not None:
        assert isinstance(value, types[kind]), f"{path}: {value!r} is not {kind}"
    if "enum" in schema:
        assert value in schema["enum"], f"{path}: {value!r} not in {schema['enum']}"
    if "minimum" in schema:
        assert value >= schema["minimum"], f"{path}: {value} < {schema['minimum']}"
    if "maximum" in schema:
        assert value <= schema["maximum"], f"{path}: {value} > {schema['maximum']}"
    if "maxLength" in schema:
        assert len(value) <= schema["maxLength"], f"{path}: {value!r} too long"
    if kind == "object":
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            assert key in value, f"{path}: missing {key}"
        for key, item in value.items():
            if key in props:
                validate(item, props[key], f"{path}.{key}")
            else:
                assert schema.get("additionalProperties", True) is not False, f"{path}: extra {key}"
    if kind == "array" and "items" in schema:
        for i, item in enumerate(value):
            validate(item, schema["items"], f"{path}[{i}]")


def check_tool_calls(resp, *tools):
    """A response that calls only the given tools, with arguments valid for their schemas."""
    by_name = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls", choice.finish_reason
    calls = choice.message.tool_calls
    assert calls, f"no tool_calls: {choice.message}"
    for call in calls:
        assert call.id.startswith("call_"), call.id
        assert call.type == "function", call.type
        assert call.function.name in by_name, call.function.name
        validate(json.loads(call.function.arguments), by_name[call.function.name])


def expect_error(cls, fn, status=None, code=None, param=None):
    """Runs fn, which must raise the SDK exception `cls` with an OpenAI error envelope."""
    try:
        fn()
    except cls as e:
        if status is not None:
            assert e.status_code == status, f"status {e.status_code}, expected {status}"
        assert isinstance(e.body, dict), f"error body is not the OpenAI envelope: {e.body!r}"
        assert isinstance(e.body.get("message"), str) and e.body["message"], e.body
        assert "type" in e.body and "code" in e.body and "param" in e.body, e.body
        assert isinstance(e.message, str) and e.message, e
        if code is not None:
            assert e.code == code and e.body["code"] == code, f"code {e.code!r}: {e.body}"
        if param is not None:
            assert e.param == param, f"param {e.param!r}: {e.body}"
        return e
    except openai.APIError as e:
        raise AssertionError(f"expected {cls.__name__}, got {type(e).__name__}: {e}") from e
    raise AssertionError(f"expected {cls.__name__}, the call succeeded")


# ---------------------------------------------------------------------------------------------
# Suite `main`: models


def check_models_list():
    raw = client().models.with_raw_response.list()
    body = raw.http_response.json()
    assert body["object"] == "list", body
    by_id = {m["id"]: m for m in body["data"]}
    for mid in SIM_MODELS + REAL_MODELS:
        assert mid in by_id, f"{mid} missing from {sorted(by_id)}"
        m = by_id[mid]
        assert m["object"] == "model" and isinstance(m["created"], int), m
        owner = "nanochat-simulator" if mid in SIM_MODELS else "nanochat"
        assert m["owned_by"] == owner, m
    ids = [m.id for m in client().models.list()]
    assert sorted(ids) == sorted(by_id), ids


def check_models_retrieve():
    m = client().models.retrieve("sft-d1")
    assert m.id == "sft-d1" and m.object == "model" and m.owned_by == "nanochat", m
    assert client().models.retrieve(SIM).owned_by == "nanochat-simulator"
    expect_error(openai.NotFoundError, lambda: client().models.retrieve("no-such-model"), 404)


# Suite `main`: simulated models


def check_sim_completion():
    for model in SIM_MODELS:
        resp = ask(model, max_tokens=50)
        check_envelope(resp)
        assert resp.model == model, resp.model
        choice = resp.choices[0]
        assert choice.index == 0 and choice.message.role == "assistant", choice
        assert isinstance(choice.message.content, str) and choice.message.content.strip(), choice
        assert choice.finish_reason in ("stop", "length"), choice.finish_reason


def check_sim_response_length():
    tokens = {"short": 0, "long": 0}
    for length in tokens:
        for seed in (1, 2, 3):
            resp = ask(seed=seed, extra_body={"response_length": length})
            check_usage(resp.usage)
            tokens[length] += resp.usage.completion_tokens
    assert tokens["short"] < tokens["long"], tokens
    check_usage(ask(extra_body={"response_length": "medium"}).usage)


def check_sim_echo():
    text = "Please repeat exactly these words back to me."
    resp = ask(content=text, extra_body={"sim_mode": "echo"})
    assert resp.choices[0].message.content.strip() == text, resp.choices[0].message.content
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second message"},
    ]
    resp = client().chat.completions.create(
        model=SIM, messages=messages, extra_body={"sim_mode": "echo"}
    )
    assert resp.choices[0].message.content.strip() == "second message", resp.choices[0]


def check_sim_seed_and_stream_agree():
    kw = dict(seed=1234, max_tokens=60, extra_body={"response_length": "medium"})
    a = ask(**kw).choices[0].message.content
    b = ask(**kw).choices[0].message.content
    assert a == b, f"same seed, different text:\n{a!r}\n{b!r}"
    assert stream_text(stream_chunks(**kw)) == a, "stream text differs from non-stream"
    c = ask(seed=4321, max_tokens=60, extra_body={"response_length": "medium"})
    assert c.choices[0].message.content != a, "different seeds, same text"


def check_stream_shape():
    chunks = stream_chunks(max_tokens=30, stream_options={"include_usage": True})
    assert len(chunks) >= 3, chunks
    first = chunks[0]
    assert first.id.startswith("chatcmpl-"), first.id
    assert (first.system_fingerprint or "").startswith("fp_"), first.system_fingerprint
    for ch in chunks:
        assert ch.object == "chat.completion.chunk", ch.object
        assert ch.id == first.id and ch.created == first.created, ch
        assert ch.system_fingerprint in (None, first.system_fingerprint), ch
    for ch in chunks[:-1]:
        assert ch.usage is None, ch
        assert len(ch.choices) == 1, ch
    assert first.choices[0].delta.role == "assistant", first.choices[0].delta
    for ch in chunks[1:-1]:
        assert ch.choices[0].delta.role is None, ch.choices[0].delta
    finishes = [c.finish_reason for ch in chunks for c in ch.choices if c.finish_reason]
    assert finishes in (["stop"], ["length"]), finishes
    last = chunks[-1]
    assert last.choices == [], last
    check_usage(last.usage)
    assert last.usage.completion_tokens <= 30, last.usage
    chunks = stream_chunks(max_tokens=30)
    assert all(ch.usage is None for ch in chunks), "usage sent without include_usage"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length"), chunks[-1]


def check_sim_timing_extensions():
    start = time.monotonic()
    first_text = None
    for ch in ask(stream=True, max_tokens=5, extra_body={"ttft_ms": 400, "itl_ms": 0}):
        if first_text is None and ch.choices and ch.choices[0].delta.content:
            first_text = time.monotonic() - start
    assert first_text is not None and first_text >= 0.35, f"first token after {first_text}s"
    start = time.monotonic()
    resp = ask(max_tokens=10, extra_body={"ttft_ms": 0, "itl_ms": 50, "itl_jitter_ms": 0,
                                          "response_length": "long"})
    took = time.monotonic() - start
    n = resp.usage.completion_tokens
    assert n == 10 and took >= 0.045 * (n - 1), f"{n} tokens in {took:.3f}s with itl 50 ms"
    resp = ask(max_tokens=5, extra_body={"tokens_per_second": 1000})
    check_usage(resp.usage)


def check_n_choices():
    resp = ask(n=2, max_tokens=20)
    assert sorted(c.index for c in resp.choices) == [0, 1], resp.choices
    assert all(c.finish_reason in ("stop", "length") for c in resp.choices), resp.choices
    check_usage(resp.usage)
    chunks = stream_chunks(n=2, max_tokens=20)
    for index in (0, 1):
        ends = [c for ch in chunks for c in ch.choices if c.index == index and c.finish_reason]
        assert len(ends) == 1, f"index {index}: {len(ends)} finish chunks"
        assert stream_text(chunks, index), f"index {index}: no text"


def check_sim_tools():
    lookup = {"type": "function", "function": {
        "name": "lookup_city", "description": "Facts about a city.", "parameters": RICH_SCHEMA}}
    tools = [BOUNDED_TOOL, lookup]
    resp = ask(content="Weather in Paris?", tools=tools, tool_choice="required")
    check_envelope(resp)
    check_tool_calls(resp, *tools)
    for tool in tools:
        named = {"type": "function", "function": {"name": tool["function"]["name"]}}
        check_tool_calls(ask(content="Go.", tools=tools, tool_choice=named), tool)


def check_sim_json_schema():
    resp = ask(content="Describe a city.", response_format={
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": RICH_SCHEMA, "strict": True},
    })
    validate(json.loads(resp.choices[0].message.content), RICH_SCHEMA)


class Person(pydantic.BaseModel):
    name: str
    age: int
    languages: list[str]
    employed: bool


def check_sdk_parse_helper():
    completions = client().chat.completions
    parse = getattr(completions, "parse", None) or client().beta.chat.completions.parse
    resp = parse(model=SIM, messages=[{"role": "user", "content": "Invent a person."}],
                 response_format=Person)
    parsed = resp.choices[0].message.parsed
    assert isinstance(parsed, Person), parsed


# Suite `main`: nanochat checkpoints


def check_sft_d1_greedy_matches_nanochat():
    expected = fixture_answer()
    resp = ask("sft-d1", temperature=0, max_tokens=64)
    check_envelope(resp)
    assert resp.model == "sft-d1", resp.model
    assert resp.choices[0].message.content == expected, resp.choices[0].message.content
    assert resp.choices[0].finish_reason == "stop", resp.choices[0].finish_reason
    assert resp.usage.prompt_tokens == 15, resp.usage
    chunks = stream_chunks("sft-d1", temperature=0, max_tokens=64,
                           stream_options={"include_usage": True})
    assert stream_text(chunks) == expected, stream_text(chunks)
    assert chunks[-1].usage.completion_tokens == resp.usage.completion_tokens, chunks[-1].usage


def check_content_parts_and_system():
    parts = [{"type": "text", "text": "What is "}, {"type": "text", "text": "12*34?"}]
    resp = ask("sft-d1", content=parts, temperature=0, max_tokens=64)
    assert resp.choices[0].message.content == fixture_answer(), resp.choices[0].message.content
    resp = client().chat.completions.create(
        model="sft-d1", temperature=0, max_tokens=16,
        messages=[{"role": "system", "content": "You are terse."},
                  {"role": "user", "content": QUESTION}])
    assert isinstance(resp.choices[0].message.content, str), resp
    assert resp.usage.prompt_tokens > 15, resp.usage


def check_stop_sequences():
    expected = fixture_answer().split("*")[0]
    resp = ask("sft-d1", temperature=0, max_tokens=64, stop=["*"])
    assert resp.choices[0].message.content == expected, resp.choices[0].message.content
    assert resp.choices[0].finish_reason == "stop", resp.choices[0].finish_reason
    chunks = stream_chunks("sft-d1", temperature=0, max_tokens=64, stop=["*"])
    assert stream_text(chunks) == expected, stream_text(chunks)
    ends = [c.finish_reason for ch in chunks for c in ch.choices if c.finish_reason]
    assert ends == ["stop"], ends


def check_length_limits():
    for model in ("sft-d1", SIM):
        for limit in ({"max_tokens": 3}, {"max_completion_tokens": 3}):
            extra = {"extra_body": {"response_length": "long"}} if model == SIM else {}
            resp = ask(model, temperature=0, **limit, **extra)
            assert resp.choices[0].finish_reason == "length", (model, limit, resp.choices[0])
            check_usage(resp.usage, exact_completion=3)


def check_real_seed_and_sampling_params():
    kw = dict(temperature=1.0, seed=99, max_tokens=20,
              extra_body={"top_k": 40, "min_p": 0.01, "repetition_penalty": 1.1})
    a = ask("sft-d2", **kw).choices[0].message.content
    b = ask("sft-d2", **kw).choices[0].message.content
    assert a == b, f"same seed, different text:\n{a!r}\n{b!r}"
    assert stream_text(stream_chunks("sft-d2", **kw)) == a, "stream text differs"
    for model in ("base-d2", "mid-d2", "sft-d3", "rl-d1"):
        check_envelope(ask(model, temperature=0.7, top_p=0.9, seed=1, max_tokens=8))


def check_logprobs():
    resp = ask("sft-d2", seed=5, max_tokens=8, logprobs=True, top_logprobs=3)
    content = resp.choices[0].logprobs.content
    assert len(content) == resp.usage.completion_tokens, (len(content), resp.usage)
    for entry in content:
        assert isinstance(entry.token, str) and entry.logprob <= 0, entry
        assert len(entry.top_logprobs) == 3, entry
        assert all(t.logprob <= 0 for t in entry.top_logprobs), entry
    assert ask("sft-d2", seed=5, max_tokens=8).choices[0].logprobs is None


def check_legacy_completions():
    c = client()
    resp = c.completions.create(model="base-d2", prompt="Hello", max_tokens=5, temperature=0)
    assert resp.object == "text_completion", resp.object
    text = resp.choices[0].text
    assert isinstance(text, str), resp
    assert resp.choices[0].finish_reason == "length", resp.choices[0].finish_reason
    check_usage(resp.usage, exact_completion=5)
    chunks = list(c.completions.create(model="base-d2", prompt="Hello", max_tokens=5,
                                       temperature=0, stream=True))
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == text, chunks
    assert len({ch.id for ch in chunks}) == 1, "chunks with different ids"
    ends = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert ends == ["length"], ends


def check_real_tools():
    resp = ask("sft-d2", content="Forecast?", tools=[BOUNDED_TOOL], tool_choice="required",
               max_tokens=200, seed=3)
    check_tool_calls(resp, BOUNDED_TOOL)
    resp = ask("sft-d2", content="Forecast?", tools=[BOUNDED_TOOL], max_tokens=200, seed=4,
               tool_choice={"type": "function", "function": {"name": "get_forecast"}})
    check_tool_calls(resp, BOUNDED_TOOL)


def check_real_json_schema():
    schema = json.loads(json.dumps(BOUNDED_SCHEMA))
    schema["properties"]["code"] = {"type": "string", "maxLength": 6}
    schema["required"].append("code")
    for seed in (1, 2):
        resp = ask("sft-d2", content="JSON please.", max_tokens=200, seed=seed,
                   response_format={"type": "json_schema", "json_schema": {
                       "name": "forecast", "schema": schema, "strict": True}})
        validate(json.loads(resp.choices[0].message.content), schema)


# Suite `main`: errors


def check_error_classes():
    e = expect_error(openai.NotFoundError, lambda: ask("no-such-model"), 404, "model_not_found")
    assert "no-such-model" in e.body["message"], e.body
    expect_error(openai.BadRequestError, lambda: ask(temperature=5), 400, param="temperature")
    expect_error(openai.BadRequestError, lambda: ask(n=0), 400)
    words = "the quick brown fox jumps over a lazy dog while seven zebras quietly watch "
    long_text = (words * (5000 // len(words) + 1))[:5000]
    expect_error(openai.BadRequestError, lambda: ask("sft-d2", content=long_text),
                 400, "context_length_exceeded")
    expect_error(openai.BadRequestError, lambda: ask("sft-d2", content=long_text, stream=True),
                 400, "context_length_exceeded")


# ---------------------------------------------------------------------------------------------
# Suite `auth` (--api-key sekret)


def check_wrong_key_refused():
    bad = client("not-the-key")
    expect_error(openai.AuthenticationError, lambda: bad.models.list(), 401)
    expect_error(openai.AuthenticationError, lambda: bad.chat.completions.create(
        model=SIM, messages=[{"role": "user", "content": "hi"}]), 401)
    with httpx.Client(trust_env=False, timeout=60) as http:
        r = http.get(ARGS.base_url.rstrip("/") + "/models")
        assert r.status_code == 401, (r.status_code, r.text)


def check_right_key_accepted():
    good = client("sekret")
    assert SIM in [m.id for m in good.models.list()]
    resp = good.chat.completions.create(model=SIM, messages=[{"role": "user", "content": "hi"}])
    check_envelope(resp)


def check_health_and_ready_need_no_key():
    with httpx.Client(trust_env=False, timeout=60) as http:
        r = http.get(root_url() + "/health")
        assert r.status_code == 200 and r.json()["status"] == "ok", (r.status_code, r.text)
        r = http.get(root_url() + "/ready")
        assert r.status_code == 200, (r.status_code, r.text)


# ---------------------------------------------------------------------------------------------
# Suite `fault` (--failure-rate 100 --failure-types T)

FAULTS = {  # type: (SDK class, status or None for any, code or None, Retry-After expected)
    "rate_limit": (openai.RateLimitError, 429, None, True),
    "invalid_api_key": (openai.AuthenticationError, 401, None, False),
    "context_length": (openai.BadRequestError, 400, "context_length_exceeded", False),
    "server_error": (openai.InternalServerError, 503, None, True),
    "invalid_request": (openai.BadRequestError, 400, None, False),
    "model_not_found": (openai.NotFoundError, 404, None, False),
}


def check_injected_fault():
    cls, status, code, retry_after = FAULTS[ARGS.fault]
    for stream in (False, True):
        e = expect_error(cls, lambda: ask(max_tokens=5, stream=stream), status, code)
        if retry_after:
            assert e.response.headers.get("retry-after"), dict(e.response.headers)
    # The other model kinds fail too: the fault is injected before any model runs.
    expect_error(cls, lambda: ask("sft-d1", max_tokens=5), status, code)


# ---------------------------------------------------------------------------------------------
# Suite `limits` (--max-request-bytes 10000)


def check_request_size_limit():
    try:
        ask(content="x" * 20_000, max_tokens=5)
    except openai.APIStatusError as e:
        assert e.status_code == 413, f"status {e.status_code}: {e}"
    else:
        raise AssertionError("a 20 kB request was accepted")
    check_envelope(ask(content="small", max_tokens=5))


# ---------------------------------------------------------------------------------------------

SUITES = {
    "main": [
        check_models_list, check_models_retrieve, check_sim_completion,
        check_sim_response_length, check_sim_echo, check_sim_seed_and_stream_agree,
        check_stream_shape, check_sim_timing_extensions, check_n_choices, check_sim_tools,
        check_sim_json_schema, check_sdk_parse_helper, check_sft_d1_greedy_matches_nanochat,
        check_content_parts_and_system, check_stop_sequences, check_length_limits,
        check_real_seed_and_sampling_params, check_logprobs, check_legacy_completions,
        check_real_tools, check_real_json_schema, check_error_classes,
    ],
    "auth": [check_wrong_key_refused, check_right_key_accepted, check_health_and_ready_need_no_key],
    "fault": [check_injected_fault],
    "limits": [check_request_size_limit],
}


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", required=True, help="http://127.0.0.1:PORT/v1")
    parser.add_argument("--fixtures", required=True, help="nanochat's golden fixtures folder")
    parser.add_argument("--suite", required=True, choices=sorted(SUITES))
    parser.add_argument("--fault", choices=sorted(FAULTS), help="suite fault: the failure type")
    ARGS = parser.parse_args()
    if ARGS.suite == "fault" and not ARGS.fault:
        parser.error("--suite fault needs --fault")
    print(f"openai {openai.__version__} against {ARGS.base_url}, suite {ARGS.suite}", flush=True)
    failed = []
    for check in SUITES[ARGS.suite]:
        name = check.__name__
        try:
            check()
            print(f"ok {name}", flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure, then go on
            failed.append(name)
            print(f"FAIL {name}: {type(e).__name__}: {e}\n{traceback.format_exc()}", flush=True)
    total = len(SUITES[ARGS.suite])
    print(f"checks: {total - len(failed)} ok, {len(failed)} failed {failed}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
