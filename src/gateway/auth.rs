//! Authentication at the edge: the bearer token, checked by the authenticator service (`GatewayConfig::auth_service`), before routing.
//!
//! A request without a well-formed `Authorization: Bearer <token>` header is refused without
//! any RPC; one whose token the auth service rejects is refused with its error. Only then does
//! the request reach a route, so no other service ever sees an unauthenticated request.

use http::header::AUTHORIZATION;
use http::HeaderMap;

use crate::framework::identity::{CheckRequest, Identity, CHECK};
use crate::framework::{Client, Context};
use crate::gateway::errors::GatewayError;

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, GatewayError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or(GatewayError::MissingToken)?;
    let text = value.to_str().map_err(|_| GatewayError::MalformedToken)?;
    let (scheme, token) = text.split_once(' ').ok_or(GatewayError::MalformedToken)?;
    let token = token.trim();
    // The scheme is case-insensitive (RFC 7235); a token never holds spaces.
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(GatewayError::MalformedToken);
    }
    Ok(token)
}

/// Asks `auth_service` who holds `token`.
pub async fn check(
    client: &Client,
    ctx: &Context,
    auth_service: &str,
    token: &str,
) -> Result<Identity, GatewayError> {
    let req = CheckRequest {
        token: token.to_string(),
    };
    Ok(client.call(ctx, auth_service, CHECK, &req).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(auth).expect("header"));
        h
    }

    #[test]
    fn only_a_bearer_header_with_one_token_is_accepted() {
        assert_eq!(bearer_token(&headers("Bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(&headers("bearer abc")), Ok("abc"));
        assert_eq!(
            bearer_token(&HeaderMap::new()),
            Err(GatewayError::MissingToken)
        );
        for bad in ["Basic abc", "Bearer", "Bearer ", "Bearer a b", "abc"] {
            assert_eq!(
                bearer_token(&headers(bad)),
                Err(GatewayError::MalformedToken),
                "{bad}"
            );
        }
    }
}
