//! What travels with a request from node to node: the nodes it visited (for hop limits and
//! loop detection), its deadline (as the remaining budget), its id and its W3C trace context.

use std::time::Duration;

use http::HeaderMap;
use idn_telemetry::trace::SpanIds;
// tokio's clock, so that tests on paused time can let a deadline pass.
use tokio::time::Instant;

use super::message::Parameters;
use crate::error::RequestError;

/// Comma-separated names of the nodes a request passed through before this one.
pub const PATH_HEADER: &str = "idn-path";
/// Milliseconds left to answer, set by the caller; each hop passes on what remains.
pub const DEADLINE_HEADER: &str = "idn-deadline-ms";
/// A gRPC caller's deadline (e.g. `250m`): honoured like the deadline header, and passed on as
/// the remaining budget.
pub const GRPC_TIMEOUT_HEADER: &str = "grpc-timeout";
/// Request id, kept across hops for log correlation.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The context of one request at this node.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Nodes visited before this one, entry node first.
    pub path: Vec<String>,
    /// When the answer is due.
    pub deadline: Instant,
    pub request_id: Option<String>,
    /// Trace id (32 hex digits) and flags of the W3C trace this request belongs to.
    pub trace: Option<(String, String)>,
}

impl RequestContext {
    /// Reads the context from request headers and parameters; `default_deadline` applies when
    /// the caller gave none.
    pub fn from_request(
        headers: &HeaderMap,
        parameters: &Parameters,
        default_deadline: Duration,
    ) -> Result<Self, RequestError> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let path = text(PATH_HEADER)
            .map(|p| {
                p.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let budget = match (
            text(DEADLINE_HEADER),
            text(GRPC_TIMEOUT_HEADER),
            parameters.get("deadline_ms"),
        ) {
            (Some(ms), _, _) => Duration::from_millis(ms.trim().parse::<u64>().map_err(|_| {
                RequestError::Invalid(format!(
                    "{DEADLINE_HEADER}: {ms:?} is not a number of milliseconds"
                ))
            })?),
            (None, Some(timeout), _) => parse_grpc_timeout(timeout).ok_or_else(|| {
                RequestError::Invalid(format!(
                    "{GRPC_TIMEOUT_HEADER}: {timeout:?} is not a gRPC timeout (digits and a unit \
                     of H, M, S, m, u or n)"
                ))
            })?,
            (None, None, Some(value)) => {
                Duration::from_millis(value.as_u64().ok_or_else(|| {
                    RequestError::Invalid(format!(
                        "parameters.deadline_ms: {value} is not a number of milliseconds"
                    ))
                })?)
            }
            (None, None, None) => default_deadline,
        };
        Ok(RequestContext {
            path,
            deadline: Instant::now() + budget,
            request_id: text(REQUEST_ID_HEADER).map(str::to_owned),
            trace: text(TRACEPARENT_HEADER).and_then(parse_traceparent),
        })
    }

    /// Refuses a request that already visited `node` or has used up its hops.
    pub fn check_route(&self, node: &str, max_hops: usize) -> Result<(), RequestError> {
        if self.path.iter().any(|n| n == node) {
            return Err(RequestError::Routing(format!(
                "forwarding loop: {} -> {node}",
                self.path.join(" -> ")
            )));
        }
        if self.path.len() > max_hops {
            return Err(RequestError::Routing(format!(
                "hop limit {max_hops} exceeded: {} -> {node}",
                self.path.join(" -> ")
            )));
        }
        Ok(())
    }

    /// Time left before the deadline (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Headers for a call to the next hop: the path including `node`, the remaining budget,
    /// the request id, and the trace with the call's span `span` as the parent.
    pub fn forward_headers(
        &self,
        node: &str,
        span: Option<SpanIds>,
    ) -> Vec<(&'static str, String)> {
        let mut path = self.path.clone();
        path.push(node.to_owned());
        let mut headers = vec![
            (PATH_HEADER, path.join(",")),
            (DEADLINE_HEADER, self.remaining().as_millis().to_string()),
        ];
        if let Some(id) = &self.request_id {
            headers.push((REQUEST_ID_HEADER, id.clone()));
        }
        headers.push((TRACEPARENT_HEADER, self.traceparent(span)));
        headers
    }

    /// The `traceparent` of a call to the next hop: the ids of the call's span when spans are
    /// exported; else this request's trace (or a new one) under a fresh parent span id, so that
    /// the next hops still share one trace id.
    fn traceparent(&self, span: Option<SpanIds>) -> String {
        let (trace_id, span_id, flags) = match span {
            Some(ids) => (
                format!("{:032x}", ids.trace_id),
                ids.span_id,
                if ids.sampled { "01" } else { "00" }.to_owned(),
            ),
            None => {
                let (trace_id, flags) = self
                    .trace
                    .clone()
                    .unwrap_or_else(|| (format!("{:032x}", fastrand::u128(1..)), "01".to_owned()));
                (trace_id, fastrand::u64(1..), flags)
            }
        };
        format!("00-{trace_id}-{span_id:016x}-{flags}")
    }
}

/// A `grpc-timeout` value: at most 8 digits and a unit (hours to nanoseconds).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `timeout` as a `grpc-timeout` value, in whole milliseconds (at most 8 digits, as the
/// protocol allows).
pub(crate) fn format_grpc_timeout(timeout: Duration) -> String {
    format!("{}m", timeout.as_millis().clamp(1, 99_999_999))
}

/// Trace id and flags of a version-00 `traceparent`; invalid values are ignored, as W3C asks.
fn parse_traceparent(value: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    match parts.as_slice() {
        ["00", trace, parent, flags]
            if hex(trace, 32)
                && hex(parent, 16)
                && hex(flags, 2)
                && trace.bytes().any(|b| b != b'0') =>
        {
            Some((trace.to_ascii_lowercase(), flags.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(headers: &[(&'static str, &str)]) -> Result<RequestContext, RequestError> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, v.parse().unwrap());
        }
        RequestContext::from_request(&map, &Parameters::new(), Duration::from_secs(1))
    }

    #[test]
    fn loops_and_hop_limits_are_refused() {
        let ctx = context(&[(PATH_HEADER, "access-0, edge-0")]).unwrap();
        assert_eq!(ctx.path, ["access-0", "edge-0"]);
        assert!(ctx.check_route("cloud-0", 8).is_ok());
        let looped = ctx.check_route("access-0", 8).unwrap_err();
        assert_eq!(
            looped,
            RequestError::Routing("forwarding loop: access-0 -> edge-0 -> access-0".into())
        );
        let limited = ctx.check_route("cloud-0", 1).unwrap_err();
        assert!(matches!(limited, RequestError::Routing(_)), "{limited:?}");
        assert!(
            limited.to_string().starts_with("hop limit 1 exceeded"),
            "{limited}"
        );
    }

    #[test]
    fn deadline_comes_from_header_parameter_or_default() {
        let ctx = context(&[(DEADLINE_HEADER, "50")]).unwrap();
        assert!(ctx.remaining() <= Duration::from_millis(50));
        let mut parameters = Parameters::new();
        parameters.insert("deadline_ms".into(), 20.into());
        let ctx =
            RequestContext::from_request(&HeaderMap::new(), &parameters, Duration::from_secs(9))
                .unwrap();
        assert!(ctx.remaining() <= Duration::from_millis(20));
        let err = context(&[(DEADLINE_HEADER, "soon")]).unwrap_err();
        assert!(matches!(err, RequestError::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains("is not a number of milliseconds"));
    }

    #[test]
    fn a_grpc_timeout_is_a_deadline() {
        let ctx = context(&[(GRPC_TIMEOUT_HEADER, "30m")]).unwrap();
        assert!(ctx.remaining() <= Duration::from_millis(30));
        assert!(ctx.remaining() > Duration::from_millis(20));
        // idn's own header wins: it is what an idn hop sends.
        let ctx = context(&[(GRPC_TIMEOUT_HEADER, "5S"), (DEADLINE_HEADER, "10")]).unwrap();
        assert!(ctx.remaining() <= Duration::from_millis(10));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        let sent = format_grpc_timeout(Duration::from_micros(250_400));
        assert_eq!(sent, "250m");
        assert_eq!(parse_grpc_timeout(&sent), Some(Duration::from_millis(250)));
        assert_eq!(
            format_grpc_timeout(Duration::from_secs(10_000_000)),
            "99999999m"
        );
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "123456789m", "10x", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
        let err = context(&[(GRPC_TIMEOUT_HEADER, "soon")]).unwrap_err();
        assert!(err.to_string().contains("is not a gRPC timeout"), "{err}");
    }

    #[test]
    fn forward_headers_extend_the_path_and_keep_the_trace() {
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = context(&[
            (PATH_HEADER, "access-0"),
            (TRACEPARENT_HEADER, trace),
            (REQUEST_ID_HEADER, "r1"),
        ])
        .unwrap();
        let headers = ctx.forward_headers("edge-0", None);
        let get = |name| headers.iter().find(|(k, _)| *k == name).unwrap().1.clone();
        assert_eq!(get(PATH_HEADER), "access-0,edge-0");
        assert_eq!(get(REQUEST_ID_HEADER), "r1");
        let forwarded = get(TRACEPARENT_HEADER);
        assert!(forwarded.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(forwarded.ends_with("-01"));
        assert_ne!(forwarded, trace, "the parent span id changes at each hop");
        assert!(
            context(&[(TRACEPARENT_HEADER, "garbage")])
                .unwrap()
                .trace
                .is_none()
        );
    }

    #[test]
    fn an_exported_call_span_is_the_parent_of_the_next_hop() {
        let ctx = context(&[(
            TRACEPARENT_HEADER,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )])
        .unwrap();
        let traceparent = |sampled| {
            let span = SpanIds {
                trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
                span_id: 0xb7ad6b7169203331,
                sampled,
            };
            let headers = ctx.forward_headers("edge-0", Some(span));
            headers
                .into_iter()
                .find(|(k, _)| *k == TRACEPARENT_HEADER)
                .unwrap()
                .1
        };
        assert_eq!(
            traceparent(true),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"
        );
        assert_eq!(
            traceparent(false),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-00"
        );
    }
}
