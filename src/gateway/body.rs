//! The request body: read under a size limit, parsed as a JSON object, merged with the path.
//!
//! The limit is checked twice: against `Content-Length` before a byte is read, and against the
//! bytes actually streamed (a chunked body declares no length). The RPC body is the JSON object
//! with the path parameters added as strings; a body field of the same name must hold the same
//! string, or the request is refused (`bad_request.param_conflict`) rather than silently
//! overridden, so a client never acts on one id while the URL names another.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Body;
use serde_json::{Map, Value};

use crate::gateway::errors::GatewayError;

/// Reads `body` whole, refusing more than `limit_bytes`.
pub async fn read_limited<B>(
    body: B,
    headers: &HeaderMap,
    limit_bytes: usize,
) -> Result<Bytes, GatewayError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if declared_length(headers).is_some_and(|n| n > limit_bytes as u64) {
        return Err(GatewayError::BodyTooLarge { limit_bytes });
    }
    match Limited::new(body, limit_bytes).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(GatewayError::BodyTooLarge { limit_bytes }),
        Err(e) => Err(GatewayError::BodyUnreadable(e.to_string())),
    }
}

/// The `Content-Length` the client declared, if it is a number.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The RPC body: `raw` (a JSON object, or nothing for `{}`) with `params` merged in.
pub fn rpc_body(raw: &[u8], params: &BTreeMap<String, String>) -> Result<Bytes, GatewayError> {
    let mut object = parse_object(raw)?;
    for (name, value) in params {
        match object.get(name) {
            Some(Value::String(s)) if s == value => {}
            Some(_) => {
                return Err(GatewayError::ParamConflict {
                    param: name.clone(),
                })
            }
            None => {
                object.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    serde_json::to_vec(&object)
        .map(Bytes::from)
        .map_err(|e| GatewayError::InvalidJson(e.to_string()))
}

fn parse_object(raw: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(raw) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(GatewayError::NotAnObject),
        Err(e) => Err(GatewayError::InvalidJson(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(id: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("id".to_string(), id.to_string())])
    }

    fn json(b: &Bytes) -> Value {
        serde_json::from_slice(b).expect("JSON")
    }

    #[test]
    fn empty_body_is_an_empty_object_plus_params() {
        let b = rpc_body(b"  ", &params("a1")).expect("merged");
        assert_eq!(json(&b), serde_json::json!({"id": "a1"}));
    }

    #[test]
    fn conflicting_fields_are_refused_and_equal_ones_kept() {
        let ok = rpc_body(br#"{"id":"a1","x":1}"#, &params("a1")).expect("merged");
        assert_eq!(json(&ok), serde_json::json!({"id": "a1", "x": 1}));
        assert_eq!(
            rpc_body(br#"{"id":"a2"}"#, &params("a1")),
            Err(GatewayError::ParamConflict { param: "id".into() })
        );
    }

    #[test]
    fn non_objects_and_broken_json_are_bad_requests() {
        assert_eq!(
            rpc_body(b"[1,2]", &BTreeMap::new()),
            Err(GatewayError::NotAnObject)
        );
        assert!(matches!(
            rpc_body(b"{\"id\":", &BTreeMap::new()),
            Err(GatewayError::InvalidJson(_))
        ));
    }
}
