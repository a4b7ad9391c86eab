//! Who may talk to a service port, and whose word a request's user identity is.
//!
//! Every service port of a deployment is closed to anyone who cannot prove they hold the
//! deployment's key ([`DeploymentKey`]): before its first frame, each connection makes a
//! handshake in which both ends prove it with HMAC-SHA256 over fresh nonces (the server first,
//! so a caller never sends a request to an impostor). A peer without the key gets its
//! connection closed before anything it sent is read as a frame.
//!
//! The user a request acts for is not taken from its metadata on trust either: the gateway,
//! once the authenticator accepted the bearer token, signs the user and scopes together with
//! the request's trace id ([`Credential::sign_identity`]); every server checks that signature
//! as the request arrives and strips a user it cannot verify ([`Credential::verify_identity`]),
//! so a handler's [`Context::user`](crate::framework::Context::user) is a user a holder of the
//! key vouched for (in the deployments here, the gateway), or nobody.
//!
//! What it does not do: it does not encrypt, and it does not authenticate each frame, so a peer
//! that can read and rewrite the traffic between two services (on the path, not merely able to
//! reach a port) is out of its reach; and every holder of the key is trusted alike: a process
//! that holds it may call as any service and, since the identity key derives from the same
//! secret, sign any user. The signature keeps users out of the hands of whoever can merely
//! reach a port, not out of the hands of a service gone wrong (that would take a key only the
//! gateway holds, such as an Ed25519 pair). docs/design.md ("Trust between services") says more.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::{RngCore, SeedableRng};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::framework::identity::{META_SCOPES, META_USER, META_USER_SIG};
use crate::framework::ids::TraceId;
use crate::framework::transport::Headers;
use crate::lock::lock;

type HmacSha256 = Hmac<Sha256>;

/// The shortest secret accepted for a key: 16 bytes (128 bits).
pub const MIN_SECRET_BYTES: usize = 16;
/// The longest key file read: 4 KiB.
const MAX_KEY_FILE_BYTES: u64 = 4096;
/// The first bytes of every handshake message: what a peer that speaks something else trips on.
const MAGIC: &[u8; 4] = b"WTA1";
/// Bytes of each side's nonce.
const NONCE_BYTES: usize = 16;
/// Bytes of a MAC (HMAC-SHA256).
const MAC_BYTES: usize = 32;
/// The longest name a peer may give in its hello.
const MAX_NAME_BYTES: usize = 255;

/// The deployment's shared secret, as the two keys derived from it: one for handshakes, one
/// for signing user identities. Its `Debug` shows nothing of either.
#[derive(Clone)]
pub struct DeploymentKey {
    connection: [u8; 32],
    identity: [u8; 32],
}

impl std::fmt::Debug for DeploymentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeploymentKey(<redacted>)")
    }
}

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The secret is too short to resist guessing.
    #[error("a deployment key needs at least {MIN_SECRET_BYTES} bytes of secret, got {0}")]
    TooShort(usize),
    /// The key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file is larger than a key could be.
    #[error("key file {path} is over {MAX_KEY_FILE_BYTES} bytes: is it the right file?")]
    TooLarge {
        /// The file.
        path: String,
    },
}

/// HMAC-SHA256 under `key`, fed `parts` in order.
fn keyed(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC-SHA256 accepts keys of every length"));
    for p in parts {
        mac.update(p);
    }
    mac
}

fn mac_of(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    keyed(key, parts).finalize().into_bytes().into()
}

fn verify_mac(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    // Constant time: how much of a forged tag matched says nothing.
    keyed(key, parts).verify_slice(tag).is_ok()
}

impl DeploymentKey {
    /// The key for `secret` (at least [`MIN_SECRET_BYTES`] bytes).
    pub fn from_secret(secret: &[u8]) -> Result<DeploymentKey, KeyError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::TooShort(secret.len()));
        }
        Ok(DeploymentKey {
            connection: mac_of(secret, &[b"windtunnel connection key v1"]),
            identity: mac_of(secret, &[b"windtunnel identity key v1"]),
        })
    }

    /// The key in the file at `path`: its contents, without surrounding whitespace, are the
    /// secret.
    pub fn from_file(path: &std::path::Path) -> Result<DeploymentKey, KeyError> {
        use std::io::Read;
        let shown = path.display().to_string();
        let read = |source| KeyError::Read {
            path: shown.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read)?;
        let mut bytes = Vec::new();
        file.take(MAX_KEY_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read)?;
        if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
            return Err(KeyError::TooLarge { path: shown });
        }
        DeploymentKey::from_secret(bytes.trim_ascii())
    }

    /// The key of a simulated deployment: derived from the run's seed, so a replay makes the
    /// same handshakes and the wind tunnel runs the same code as a real deployment.
    pub fn from_seed(seed: u64) -> DeploymentKey {
        let mut secret = [0u8; 32];
        crate::framework::ids::stream(seed, "trust/key").fill_bytes(&mut secret);
        DeploymentKey::from_secret(&secret).unwrap_or_else(|_| unreachable!("32 bytes"))
    }

    /// A fresh key from the operating system's randomness, for a deployment whose services all
    /// live in one process (`windtunnel serve` without `--key-file`).
    pub fn generate() -> DeploymentKey {
        let mut secret = [0u8; 32];
        rand_chacha::ChaCha20Rng::from_os_rng().fill_bytes(&mut secret);
        DeploymentKey::from_secret(&secret).unwrap_or_else(|_| unreachable!("32 bytes"))
    }
}

/// What a party of a deployment proves itself with: the key, the name it gives in handshakes,
/// and where its nonces come from.
#[derive(Clone)]
pub struct Credential {
    key: Arc<DeploymentKey>,
    name: Arc<str>,
    nonces: Arc<Mutex<Box<dyn RngCore + Send>>>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer did not speak the handshake (a raw frame, HTTP, anything else).
    #[error("the peer does not speak windtunnel's handshake")]
    NotAHandshake,
    /// The peer's proof was wrong: it does not hold the deployment's key.
    #[error("the peer does not hold the deployment key")]
    BadProof,
    /// The peer's name is not valid UTF-8 or is empty.
    #[error("the peer's name is not valid")]
    BadName,
    /// The handshake did not finish in time.
    #[error("the handshake did not finish within {0:?}")]
    Timeout(Duration),
    /// The connection failed underneath.
    #[error("connection error during the handshake: {0}")]
    Io(#[from] std::io::Error),
}

impl Credential {
    /// A credential for `name` whose nonces come from `nonces`: a seeded stream in the
    /// simulation, [`Credential::with_os_nonces`] on a real network.
    pub fn new(key: DeploymentKey, name: &str, nonces: impl RngCore + Send + 'static) -> Self {
        Credential {
            key: Arc::new(key),
            name: name.into(),
            nonces: Arc::new(Mutex::new(Box::new(nonces))),
        }
    }

    /// A credential for `name` whose nonces come from the operating system's randomness.
    pub fn with_os_nonces(key: DeploymentKey, name: &str) -> Self {
        Credential::new(key, name, rand_chacha::ChaCha20Rng::from_os_rng())
    }

    /// The same key and nonces under another name (one process, many services).
    pub fn named(&self, name: &str) -> Credential {
        Credential {
            name: name.into(),
            ..self.clone()
        }
    }

    /// The name this party gives in handshakes.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn nonce(&self) -> [u8; NONCE_BYTES] {
        let mut n = [0u8; NONCE_BYTES];
        lock(&self.nonces).fill_bytes(&mut n);
        n
    }

    /// The caller's side of a handshake on a fresh connection: says who it is, checks the
    /// server's proof, then proves itself. After `Ok`, frames may flow.
    pub async fn client_handshake<S>(
        &self,
        stream: &mut S,
        timeout: Duration,
    ) -> Result<(), HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let exchange = async {
            let nonce_c = self.nonce();
            let name = self.name.as_bytes();
            let name = &name[..name.len().min(MAX_NAME_BYTES)];
            let mut hello = Vec::with_capacity(4 + NONCE_BYTES + 1 + name.len());
            hello.extend_from_slice(MAGIC);
            hello.extend_from_slice(&nonce_c);
            hello.push(name.len() as u8);
            hello.extend_from_slice(name);
            stream.write_all(&hello).await?;
            let mut reply = [0u8; 4 + NONCE_BYTES + MAC_BYTES];
            stream.read_exact(&mut reply).await?;
            let (magic, rest) = reply.split_at(4);
            let (nonce_s, mac_s) = rest.split_at(NONCE_BYTES);
            if magic != MAGIC {
                return Err(HandshakeError::NotAHandshake);
            }
            let key = &self.key.connection;
            if !verify_mac(key, &[b"server", &nonce_c, nonce_s, name], mac_s) {
                return Err(HandshakeError::BadProof);
            }
            let proof = mac_of(key, &[b"client", &nonce_c, nonce_s, name]);
            stream.write_all(&proof).await?;
            Ok(())
        };
        crate::framework::timer::timeout(timeout, exchange)
            .await
            .map_err(|_| HandshakeError::Timeout(timeout))?
    }

    /// The server's side of a handshake on an accepted connection: reads the caller's hello,
    /// proves itself, and checks the caller's proof. Returns the name the caller gave.
    pub async fn server_handshake<S>(
        &self,
        stream: &mut S,
        timeout: Duration,
    ) -> Result<String, HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let exchange = async {
            // The magic first: a peer that speaks something else is closed on its first bytes.
            let mut magic = [0u8; 4];
            stream.read_exact(&mut magic).await?;
            if &magic != MAGIC {
                return Err(HandshakeError::NotAHandshake);
            }
            let mut head = [0u8; NONCE_BYTES + 1];
            stream.read_exact(&mut head).await?;
            let nonce_c = &head[..NONCE_BYTES];
            let mut name = vec![0u8; usize::from(head[NONCE_BYTES])];
            stream.read_exact(&mut name).await?;
            let nonce_s = self.nonce();
            let key = &self.key.connection;
            let mac_s = mac_of(key, &[b"server", nonce_c, &nonce_s, &name]);
            let mut reply = Vec::with_capacity(4 + NONCE_BYTES + MAC_BYTES);
            reply.extend_from_slice(MAGIC);
            reply.extend_from_slice(&nonce_s);
            reply.extend_from_slice(&mac_s);
            stream.write_all(&reply).await?;
            let mut proof = [0u8; MAC_BYTES];
            stream.read_exact(&mut proof).await?;
            if !verify_mac(key, &[b"client", nonce_c, &nonce_s, &name], &proof) {
                return Err(HandshakeError::BadProof);
            }
            match String::from_utf8(name) {
                Ok(name) if !name.is_empty() => Ok(name),
                _ => Err(HandshakeError::BadName),
            }
        };
        crate::framework::timer::timeout(timeout, exchange)
            .await
            .map_err(|_| HandshakeError::Timeout(timeout))?
    }

    /// The identity MAC over (`trace`, `user`, `scopes`), ready to finalize or to check.
    fn identity_mac(&self, trace: TraceId, user: &str, scopes: &str) -> HmacSha256 {
        keyed(
            &self.key.identity,
            &[
                &trace.0.to_be_bytes(),
                &(user.len() as u64).to_be_bytes(),
                user.as_bytes(),
                scopes.as_bytes(),
            ],
        )
    }

    /// The signature, in hex, that vouches for `user` holding `scopes` within `trace`.
    pub fn sign_identity(&self, trace: TraceId, user: &str, scopes: &str) -> String {
        let tag = self
            .identity_mac(trace, user, scopes)
            .finalize()
            .into_bytes();
        tag.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks the user identity in `headers` as a request arrives. A user and scopes whose
    /// signature is missing or wrong are removed, so no handler sees them. Returns `false`
    /// when something was removed.
    pub fn verify_identity(&self, headers: &mut Headers) -> bool {
        let meta = &headers.meta;
        let (user, scopes) = (meta.get(META_USER), meta.get(META_SCOPES));
        if user.is_none() && scopes.is_none() && !meta.contains_key(META_USER_SIG) {
            return true;
        }
        let genuine = match (user, meta.get(META_USER_SIG).and_then(|s| unhex(s))) {
            (Some(user), Some(tag)) => {
                let scopes = scopes.map_or("", String::as_str);
                let mac = self.identity_mac(headers.trace_id, user, scopes);
                // Constant time, as in the handshake.
                mac.verify_slice(&tag).is_ok()
            }
            _ => false,
        };
        if !genuine {
            let meta = &mut headers.meta;
            meta.remove(META_USER);
            meta.remove(META_SCOPES);
            meta.remove(META_USER_SIG);
        }
        genuine
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != MAC_BYTES * 2 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::ids::stream;

    fn cred(seed: u64, name: &str) -> Credential {
        Credential::new(DeploymentKey::from_seed(seed), name, stream(7, name))
    }

    #[tokio::test]
    async fn peers_with_the_same_key_shake_hands_and_others_do_not() {
        let t = Duration::from_secs(1);
        let (mut a, mut b) = tokio::io::duplex(1024);
        let (client, server) = (cred(1, "api.x"), cred(1, "service.y"));
        let (c, s) = tokio::join!(
            client.client_handshake(&mut a, t),
            server.server_handshake(&mut b, t)
        );
        assert!(c.is_ok());
        assert_eq!(s.expect("same key"), "api.x");

        let (mut a, mut b) = tokio::io::duplex(1024);
        let (client, server) = (cred(2, "intruder"), cred(1, "service.y"));
        let (c, _s) = tokio::join!(
            client.client_handshake(&mut a, t),
            server.server_handshake(&mut b, t)
        );
        // The server proves itself first: a caller without the key learns the server is not
        // one of its own and sends nothing more.
        assert!(matches!(c, Err(HandshakeError::BadProof)));
    }

    #[tokio::test]
    async fn a_raw_frame_is_not_a_handshake() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[
            0, 0, 0, 40, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ])
        .await
        .expect("write");
        let s = cred(1, "service.y")
            .server_handshake(&mut b, Duration::from_secs(1))
            .await;
        assert!(matches!(s, Err(HandshakeError::NotAHandshake)));
    }

    #[test]
    fn identities_verify_only_with_their_trace_user_and_scopes() {
        let c = cred(1, "gateway");
        let sig = c.sign_identity(TraceId(9), "alice", "accounts");
        let headers = |trace: u64, user: &str, scopes: &str, sig: &str| {
            let mut h = Headers {
                trace_id: TraceId(trace),
                ..Headers::default()
            };
            h.meta.insert(META_USER.into(), user.into());
            h.meta.insert(META_SCOPES.into(), scopes.into());
            h.meta.insert(META_USER_SIG.into(), sig.into());
            h
        };
        let mut ok = headers(9, "alice", "accounts", &sig);
        assert!(c.verify_identity(&mut ok));
        assert_eq!(ok.meta.get(META_USER).map(String::as_str), Some("alice"));
        for mut forged in [
            headers(10, "alice", "accounts", &sig),
            headers(9, "bob", "accounts", &sig),
            headers(9, "alice", "accounts admin", &sig),
            headers(9, "alice", "accounts", "00"),
            headers(
                9,
                "alice",
                "accounts",
                &cred(2, "x").sign_identity(TraceId(9), "alice", "accounts"),
            ),
        ] {
            assert!(!cred(1, "service").verify_identity(&mut forged));
            assert!(forged.meta.is_empty(), "a forged identity is removed whole");
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(
            DeploymentKey::from_secret(b"short"),
            Err(KeyError::TooShort(5))
        ));
        assert!(DeploymentKey::from_secret(&[7u8; 16]).is_ok());
    }
}
