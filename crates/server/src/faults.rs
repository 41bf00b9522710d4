//! Fault injection, as llm-d-inference-sim does it: `--failure-rate P` (a percentage, 0–100) of
//! generation requests fail with one of `--failure-types`, each answered with the status and
//! OpenAI-shaped body a real provider sends — so an app's retry and error paths can be tested
//! against this server. It applies to every model, real or simulated.

use rand::Rng;

use crate::api_error::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureType {
    RateLimit,
    InvalidApiKey,
    ContextLength,
    ServerError,
    InvalidRequest,
    ModelNotFound,
}

impl FailureType {
    pub const ALL: [FailureType; 6] = [
        FailureType::RateLimit,
        FailureType::InvalidApiKey,
        FailureType::ContextLength,
        FailureType::ServerError,
        FailureType::InvalidRequest,
        FailureType::ModelNotFound,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FailureType::RateLimit => "rate_limit",
            FailureType::InvalidApiKey => "invalid_api_key",
            FailureType::ContextLength => "context_length",
            FailureType::ServerError => "server_error",
            FailureType::InvalidRequest => "invalid_request",
            FailureType::ModelNotFound => "model_not_found",
        }
    }

    /// The error a provider would send for `model`.
    pub fn error(self, model: &str) -> ApiError {
        match self {
            FailureType::RateLimit => ApiError::rate_limited(
                format!("Rate limit reached for {model} in organization org-simulated on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 1s."),
                1,
            ),
            FailureType::InvalidApiKey => ApiError::invalid_api_key(Some("sk-simulated-invalid-key")),
            FailureType::ContextLength => ApiError::context_length(1024, 1500, None),
            FailureType::ServerError => ApiError::unavailable("The server is overloaded or not ready yet.", 1),
            FailureType::InvalidRequest => ApiError::invalid_request(
                format!("Invalid request (injected fault) for model {model}."),
                Some("model"),
            ),
            FailureType::ModelNotFound => ApiError::model_not_found(&format!("{model}-nonexistent")),
        }
    }
}

impl std::str::FromStr for FailureType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FailureType::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = FailureType::ALL.iter().map(|t| t.name()).collect();
                format!(
                    "unknown failure type {s:?} (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct FaultInjector {
    /// Percentage of requests that fail, 0–100.
    pub rate: f64,
    pub types: Vec<FailureType>,
}

impl Default for FaultInjector {
    fn default() -> Self {
        Self {
            rate: 0.0,
            types: FailureType::ALL.to_vec(),
        }
    }
}

impl FaultInjector {
    /// The fault to answer this request with, if it is chosen to fail.
    pub fn draw(&self, model: &str) -> Option<ApiError> {
        if self.rate <= 0.0 || self.types.is_empty() {
            return None;
        }
        let mut rng = rand::rng();
        if rng.random::<f64>() * 100.0 >= self.rate {
            return None;
        }
        let kind = self.types[rng.random_range(0..self.types.len())];
        Some(kind.error(model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_statuses() {
        let never = FaultInjector::default();
        assert!((0..100).all(|_| never.draw("m").is_none()));
        let always = FaultInjector {
            rate: 100.0,
            types: vec![FailureType::RateLimit],
        };
        let e = always.draw("m").unwrap();
        assert_eq!((e.status.as_u16(), e.retry_after), (429, Some(1)));
        let half = FaultInjector {
            rate: 50.0,
            types: FailureType::ALL.to_vec(),
        };
        let failed = (0..4000).filter(|_| half.draw("m").is_some()).count();
        assert!((1700..2300).contains(&failed), "{failed}");
        let statuses: Vec<u16> = FailureType::ALL
            .iter()
            .map(|t| t.error("m").status.as_u16())
            .collect();
        assert_eq!(statuses, [429, 401, 400, 503, 400, 404]);
        assert!("nope"
            .parse::<FailureType>()
            .unwrap_err()
            .contains("rate_limit"));
    }
}
