//! A scripted node for the replay's tests: a real HTTP server on loopback that answers each
//! request from a function of its method, path and JSON body, and records what it was sent.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// A request the node received: method, path and JSON body (`null` if none).
pub type Seen = (String, String, Value);

type Answer = dyn Fn(&str, &str, &Value) -> (u16, Value) + Send + Sync;

pub struct FakeNode {
    /// `http://127.0.0.1:port`
    pub base: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeNode {
    pub async fn start(
        answer: impl Fn(&str, &str, &Value) -> (u16, Value) + Send + Sync + 'static,
    ) -> FakeNode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let answer: Arc<Answer> = Arc::new(answer);
        let record = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (seen, answer) = (Arc::clone(&record), Arc::clone(&answer));
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let (seen, answer) = (Arc::clone(&seen), Arc::clone(&answer));
                        async move {
                            let (method, path) = (
                                request.method().to_string(),
                                request.uri().path().to_owned(),
                            );
                            let bytes = request.into_body().collect().await.unwrap().to_bytes();
                            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                            let (status, reply) = answer(&method, &path, &body);
                            seen.lock().unwrap().push((method, path, body));
                            let response = http::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(reply.to_string())))
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    },
                );
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        FakeNode { base, seen }
    }

    /// The requests received at `path`, in order.
    pub fn bodies(&self, path: &str) -> Vec<Value> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(_, p, _)| p == path)
            .map(|(_, _, b)| b.clone())
            .collect()
    }
}
