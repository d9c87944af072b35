//! Routing: the one function that matches method and path segments to an OIP v2 route.

use http::Method;

use crate::error::RequestError;

/// A matched route.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route<'a> {
    Live,
    Ready,
    ServerMetadata,
    Metrics,
    ModelMetadata(&'a str, Option<&'a str>),
    ModelReady(&'a str, Option<&'a str>),
    Infer(&'a str, Option<&'a str>),
    /// Labels for a service's answers (idn extension).
    Feedback(&'a str),
    /// What a service learned: read (GET) or seeded (PUT) (idn extension).
    Learned(&'a str),
    /// A service's hard-example store: read (GET) or drained (DELETE) (idn extension).
    HardExamples(&'a str),
}

/// Matches method and path segments to a route.
pub(super) fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, RequestError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    const GET: &[Method] = &[Method::GET];
    const POST: &[Method] = &[Method::POST];
    const GET_PUT: &[Method] = &[Method::GET, Method::PUT];
    const GET_DELETE: &[Method] = &[Method::GET, Method::DELETE];
    let (route, allowed): (Route, &[Method]) = match segments.as_slice() {
        ["v2", "health", "live"] => (Route::Live, GET),
        ["v2", "health", "ready"] => (Route::Ready, GET),
        ["v2"] => (Route::ServerMetadata, GET),
        ["metrics"] => (Route::Metrics, GET),
        ["v2", "models", name, "feedback"] => (Route::Feedback(name), POST),
        ["v2", "models", name, "learned"] => (Route::Learned(name), GET_PUT),
        ["v2", "models", name, "hard-examples"] => (Route::HardExamples(name), GET_DELETE),
        ["v2", "models", name, rest @ ..] => {
            let (version, rest) = match rest {
                ["versions", v, rest @ ..] => (Some(*v), rest),
                _ => (None, rest),
            };
            match rest {
                [] => (Route::ModelMetadata(name, version), GET),
                ["ready"] => (Route::ModelReady(name, version), GET),
                ["infer"] => (Route::Infer(name, version), POST),
                _ => return Err(RequestError::NotFound(format!("no route for {path}"))),
            }
        }
        _ => return Err(RequestError::NotFound(format!("no route for {path}"))),
    };
    if !allowed.contains(method) {
        let allowed: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        return Err(RequestError::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_owned(),
            allowed: allowed.join(" or "),
        });
    }
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::http_status;
    use http::StatusCode;

    #[test]
    fn routes_match_the_oip_paths() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(route(&get, "/v2/health/live"), Ok(Route::Live));
        assert_eq!(route(&get, "/v2/health/ready"), Ok(Route::Ready));
        assert_eq!(route(&get, "/v2"), Ok(Route::ServerMetadata));
        assert_eq!(route(&get, "/metrics"), Ok(Route::Metrics));
        assert_eq!(
            route(&get, "/v2/models/m"),
            Ok(Route::ModelMetadata("m", None))
        );
        assert_eq!(
            route(&get, "/v2/models/m/versions/2"),
            Ok(Route::ModelMetadata("m", Some("2")))
        );
        assert_eq!(
            route(&get, "/v2/models/m/ready"),
            Ok(Route::ModelReady("m", None))
        );
        assert_eq!(
            route(&post, "/v2/models/m/versions/1/infer"),
            Ok(Route::Infer("m", Some("1")))
        );
        assert_eq!(
            route(&post, "/v2/models/s/feedback"),
            Ok(Route::Feedback("s"))
        );
        assert_eq!(
            route(&Method::PUT, "/v2/models/s/learned"),
            Ok(Route::Learned("s"))
        );
        assert_eq!(
            route(&Method::DELETE, "/v2/models/s/hard-examples"),
            Ok(Route::HardExamples("s"))
        );
        let wrong = route(&post, "/v2/models/s/learned").unwrap_err();
        assert!(wrong.to_string().contains("use GET or PUT"), "{wrong}");
    }

    #[test]
    fn unknown_paths_and_wrong_methods_are_refused() {
        assert_eq!(
            http_status(&route(&Method::GET, "/v1/models/m").unwrap_err()),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            http_status(&route(&Method::GET, "/v2/models/m/explain").unwrap_err()),
            StatusCode::NOT_FOUND
        );
        let wrong = route(&Method::GET, "/v2/models/m/infer").unwrap_err();
        assert_eq!(http_status(&wrong), StatusCode::METHOD_NOT_ALLOWED);
        assert!(wrong.to_string().contains("use POST"), "{wrong}");
        assert_eq!(
            http_status(&route(&Method::POST, "/v2/health/live").unwrap_err()),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
