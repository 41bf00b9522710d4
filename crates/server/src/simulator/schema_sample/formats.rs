//! String `format`s (date-time, email, uuid, ipv4, ...): plausible values to sample, and the
//! shapes the validator checks. Unknown formats are annotations and left to plain words.

use super::pattern::regex_matches;
use super::sampler::Sampler;
use rand::Rng;

impl Sampler<'_> {
    /// A valid-looking string for a known `format`; None for formats left to plain words.
    pub(super) fn format(&mut self, format: &str) -> Option<String> {
        let (a, b) = (self.word().to_lowercase(), self.word().to_lowercase());
        let r = &mut *self.rng;
        let date = format!(
            "{:04}-{:02}-{:02}",
            r.random_range(2000..=2030),
            r.random_range(1..=12),
            r.random_range(1..=28)
        );
        let (h, m, s) = (
            r.random_range(0..24),
            r.random_range(0..60),
            r.random_range(0..60),
        );
        let time = format!("{h:02}:{m:02}:{s:02}Z");
        Some(match format {
            "date-time" => format!("{date}T{time}"),
            "date" => date,
            "time" => time,
            "email" | "idn-email" => format!("{a}.{b}@example.com"),
            "uri" | "url" | "iri" => format!("https://example.com/{a}/{b}"),
            "uri-reference" | "iri-reference" => format!("/{a}/{b}"),
            "hostname" | "idn-hostname" => format!("{a}.example.com"),
            "ipv4" => {
                let octets: [u8; 3] = r.random();
                format!("10.{}.{}.{}", octets[0], octets[1], octets[2])
            }
            "ipv6" => format!("2001:db8::{:x}:{:x}", r.random::<u16>(), r.random::<u16>()),
            "duration" => format!("P{}DT{h}H", r.random_range(1..=30)),
            "uuid" => {
                // Version 4 (random), RFC 4122 variant.
                let bits =
                    r.random::<u128>() & !(0xF << 76) & !(0x3 << 62) | (0x4 << 76) | (0x2 << 62);
                let hex = format!("{bits:032x}");
                let groups = [
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..],
                ];
                groups.join("-")
            }
            _ => return None,
        })
    }
}

/// Whether `text` is a valid value of a known `format`; None for unknown formats.
pub(super) fn format_matches(format: &str, text: &str) -> Option<bool> {
    let shape = match format {
        "date-time" => r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$",
        "date" => r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$",
        "time" => r"^([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]\d\d:\d\d)$",
        "email" | "idn-email" => r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        "uri" | "url" | "iri" => r"^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$",
        "uri-reference" | "iri-reference" => r"^\S*$",
        "hostname" | "idn-hostname" => {
            r"^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$"
        }
        "uuid" => r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$",
        "duration" => r"^P(\d+[YMWD])*(T(\d+[HMS])+)?$",
        "ipv4" => return Some(text.parse::<std::net::Ipv4Addr>().is_ok()),
        "ipv6" => return Some(text.parse::<std::net::Ipv6Addr>().is_ok()),
        _ => return None,
    };
    regex_matches(shape, text)
}
