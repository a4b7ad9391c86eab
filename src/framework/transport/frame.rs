//! The wire format of inter-service RPC: frames, their headers, and the codec.
//!
//! A frame is a 4-byte big-endian length followed by a binary payload: a kind byte
//! (request, response, cancel), the multiplexing id, then the fields. Every length is checked
//! against the bytes that remain and against `max_frame_bytes` before anything is allocated, so a
//! crafted length can neither overflow nor exhaust memory: a bad frame is a [`FrameError`], which
//! closes that one connection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::framework::error::Error;
use crate::framework::ids::{RequestId, SpanId, TraceId};

/// Default limit on one frame's payload: 4 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

const KIND_REQUEST: u8 = 1;
const KIND_RESPONSE: u8 = 2;
const KIND_CANCEL: u8 = 3;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The declared length is over the limit.
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// Declared or actual length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The payload does not decode.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// A large frame arrived while the server already buffers its budget of large frames.
    #[error("frame of {len} bytes refused: the server is buffering its budget of large frames")]
    Busy {
        /// Declared length.
        len: usize,
    },
    /// The connection failed underneath.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

/// What travels with a request: deadline budget, request tree and trace context, and
/// free-form metadata (e.g. the authenticated user, carried from the gateway).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Time the caller still allows, measured when the frame was written.
    pub deadline_remaining: Option<Duration>,
    /// This request's id.
    pub request_id: RequestId,
    /// The id of the request whose handler made this call, if any.
    pub parent_request_id: Option<RequestId>,
    /// The calling service, if the caller is a service.
    pub origin_service: Option<Arc<str>>,
    /// The calling endpoint, if the caller is a service's handler.
    pub origin_endpoint: Option<Arc<str>>,
    /// The trace this request belongs to.
    pub trace_id: TraceId,
    /// The span of this call.
    pub span_id: SpanId,
    /// The caller's span, if any.
    pub parent_span_id: Option<SpanId>,
    /// Free-form metadata, ordered by key.
    pub meta: BTreeMap<String, String>,
}

/// A call: which service and endpoint, with headers and a serialized body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFrame {
    /// Multiplexing id, unique per connection and direction.
    pub id: u64,
    /// Target service name.
    pub service: Arc<str>,
    /// Target endpoint name.
    pub endpoint: Arc<str>,
    /// Deadline, request tree, trace, metadata.
    pub headers: Headers,
    /// The serialized request (JSON by default).
    pub body: Bytes,
}

/// The answer to a request with the same `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseFrame {
    /// The id of the request answered.
    pub id: u64,
    /// The serialized response, or a typed error.
    pub result: Result<Bytes, Error>,
}

/// One unit on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A call.
    Request(RequestFrame),
    /// An answer.
    Response(ResponseFrame),
    /// The caller gave up on request `id`: drop its handler.
    Cancel {
        /// The id of the request to cancel.
        id: u64,
    },
}

/// Appends `frame`, length prefix included, to `dst`. Fails (writing nothing) when the payload
/// would exceed `max_frame_bytes`.
pub fn encode_frame(
    frame: &Frame,
    dst: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<(), FrameError> {
    framed(dst, max_frame_bytes, |dst| match frame {
        Frame::Request(r) => encode_request(r, dst),
        Frame::Response(r) => encode_response(r, dst),
        Frame::Cancel { id } => {
            dst.put_u8(KIND_CANCEL);
            dst.put_u64(*id);
        }
    })
}

/// Appends the frame of request `r`, as [`encode_frame`] does `Frame::Request`, from a
/// borrowed request: a call encodes its request where it keeps it, without moving it into a
/// [`Frame`].
pub(crate) fn encode_request_frame(
    r: &RequestFrame,
    dst: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<(), FrameError> {
    framed(dst, max_frame_bytes, |dst| encode_request(r, dst))
}

/// Appends the frame of response `r`, as [`encode_frame`] does `Frame::Response`, from a
/// borrowed response: an answer that may not leave yet stays where it is, to be sent plainly.
pub(crate) fn encode_response_frame(
    r: &ResponseFrame,
    dst: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<(), FrameError> {
    framed(dst, max_frame_bytes, |dst| encode_response(r, dst))
}

/// Appends the payload `payload` writes, behind its length prefix, or nothing when it would
/// exceed `max_frame_bytes`.
fn framed(
    dst: &mut BytesMut,
    max_frame_bytes: usize,
    payload: impl FnOnce(&mut BytesMut),
) -> Result<(), FrameError> {
    let start = dst.len();
    dst.put_u32(0);
    payload(dst);
    let len = dst.len() - start - 4;
    let Some(len32) = u32::try_from(len).ok().filter(|_| len <= max_frame_bytes) else {
        dst.truncate(start);
        return Err(FrameError::TooLarge {
            len,
            max: max_frame_bytes,
        });
    };
    dst[start..start + 4].copy_from_slice(&len32.to_be_bytes());
    Ok(())
}

fn encode_request(r: &RequestFrame, dst: &mut BytesMut) {
    dst.put_u8(KIND_REQUEST);
    dst.put_u64(r.id);
    put_str(dst, &r.service);
    put_str(dst, &r.endpoint);
    encode_headers(&r.headers, dst);
    put_bytes(dst, &r.body);
}

fn encode_response(r: &ResponseFrame, dst: &mut BytesMut) {
    dst.put_u8(KIND_RESPONSE);
    dst.put_u64(r.id);
    match &r.result {
        Ok(body) => {
            dst.put_u8(0);
            put_bytes(dst, body);
        }
        Err(e) => {
            dst.put_u8(1);
            put_str(dst, e.code());
            put_str(dst, e.message());
            put_map(dst, e.params());
        }
    }
}

fn encode_headers(h: &Headers, dst: &mut BytesMut) {
    let nanos = h
        .deadline_remaining
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    put_opt_u64(dst, nanos);
    dst.put_u64(h.request_id.0);
    put_opt_u64(dst, h.parent_request_id.map(|r| r.0));
    put_opt_str(dst, h.origin_service.as_deref());
    put_opt_str(dst, h.origin_endpoint.as_deref());
    dst.put_u64(h.trace_id.0);
    dst.put_u64(h.span_id.0);
    put_opt_u64(dst, h.parent_span_id.map(|s| s.0));
    put_map(dst, &h.meta);
}

fn put_str(dst: &mut BytesMut, s: &str) {
    put_bytes(dst, s.as_bytes());
}

fn put_bytes(dst: &mut BytesMut, b: &[u8]) {
    // Lengths above u32::MAX cannot pass the frame limit; saturating keeps encode total and the
    // frame-size check rejects it.
    dst.put_u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
    dst.put_slice(b);
}

fn put_opt_u64(dst: &mut BytesMut, v: Option<u64>) {
    match v {
        Some(v) => {
            dst.put_u8(1);
            dst.put_u64(v);
        }
        None => dst.put_u8(0),
    }
}

fn put_opt_str(dst: &mut BytesMut, v: Option<&str>) {
    match v {
        Some(s) => {
            dst.put_u8(1);
            put_str(dst, s);
        }
        None => dst.put_u8(0),
    }
}

fn put_map(dst: &mut BytesMut, m: &BTreeMap<String, String>) {
    dst.put_u32(u32::try_from(m.len()).unwrap_or(u32::MAX));
    for (k, v) in m {
        put_str(dst, k);
        put_str(dst, v);
    }
}

/// Most names one connection's decoder remembers (see [`Names`]).
const NAMES_KEPT: usize = 32;

/// The names (services, endpoints, callers) a connection's frames carried recently, so a name
/// that comes again is shared rather than allocated again: a connection carries the same few
/// names frame after frame. At most `NAMES_KEPT` (32) are kept, the first ones seen, so a peer
/// sending a new name in every frame costs an allocation per name and no more memory.
#[derive(Debug, Default)]
pub struct Names {
    kept: Vec<Arc<str>>,
}

impl Names {
    /// The name in `bytes`, shared with an earlier frame's when it is one already seen.
    fn name(&mut self, bytes: &[u8]) -> Result<Arc<str>, FrameError> {
        if let Some(name) = self.kept.iter().find(|k| k.as_bytes() == bytes) {
            return Ok(name.clone());
        }
        let text =
            std::str::from_utf8(bytes).map_err(|_| FrameError::Malformed("string is not UTF-8"))?;
        let name: Arc<str> = Arc::from(text);
        if self.kept.len() < NAMES_KEPT {
            self.kept.push(name.clone());
        }
        Ok(name)
    }
}

/// Decodes one payload (without its length prefix).
pub fn decode_payload(src: Bytes) -> Result<Frame, FrameError> {
    decode_payload_with(src, &mut Names::default())
}

/// Decodes one payload, sharing the names it carries with earlier frames' through `names`.
pub fn decode_payload_with(mut src: Bytes, names: &mut Names) -> Result<Frame, FrameError> {
    let kind = get_u8(&mut src)?;
    let id = get_u64(&mut src)?;
    let frame = match kind {
        KIND_REQUEST => Frame::Request(RequestFrame {
            id,
            service: get_name(&mut src, names)?,
            endpoint: get_name(&mut src, names)?,
            headers: decode_headers(&mut src, names)?,
            body: get_bytes(&mut src)?,
        }),
        KIND_RESPONSE => Frame::Response(ResponseFrame {
            id,
            result: decode_result(&mut src)?,
        }),
        KIND_CANCEL => Frame::Cancel { id },
        _ => return Err(FrameError::Malformed("unknown frame kind")),
    };
    if src.has_remaining() {
        return Err(FrameError::Malformed("trailing bytes after frame"));
    }
    Ok(frame)
}

fn decode_result(src: &mut Bytes) -> Result<Result<Bytes, Error>, FrameError> {
    match get_u8(src)? {
        0 => Ok(Ok(get_bytes(src)?)),
        1 => {
            let code = get_str(src)?;
            let message = get_str(src)?;
            let mut err = Error::new(code, message);
            for (k, v) in get_map(src)? {
                err = err.with_param(k, v);
            }
            Ok(Err(err))
        }
        _ => Err(FrameError::Malformed("unknown result tag")),
    }
}

fn decode_headers(src: &mut Bytes, names: &mut Names) -> Result<Headers, FrameError> {
    Ok(Headers {
        deadline_remaining: get_opt_u64(src)?.map(Duration::from_nanos),
        request_id: RequestId(get_u64(src)?),
        parent_request_id: get_opt_u64(src)?.map(RequestId),
        origin_service: get_opt_name(src, names)?,
        origin_endpoint: get_opt_name(src, names)?,
        trace_id: TraceId(get_u64(src)?),
        span_id: SpanId(get_u64(src)?),
        parent_span_id: get_opt_u64(src)?.map(SpanId),
        meta: get_map(src)?,
    })
}

fn need(src: &Bytes, n: usize) -> Result<(), FrameError> {
    if src.remaining() < n {
        return Err(FrameError::Malformed("truncated field"));
    }
    Ok(())
}

fn get_u8(src: &mut Bytes) -> Result<u8, FrameError> {
    need(src, 1)?;
    Ok(src.get_u8())
}

fn get_u64(src: &mut Bytes) -> Result<u64, FrameError> {
    need(src, 8)?;
    Ok(src.get_u64())
}

fn get_bytes(src: &mut Bytes) -> Result<Bytes, FrameError> {
    need(src, 4)?;
    let len = src.get_u32() as usize;
    need(src, len)?;
    Ok(src.split_to(len))
}

fn get_str(src: &mut Bytes) -> Result<String, FrameError> {
    let b = get_bytes(src)?;
    String::from_utf8(b.to_vec()).map_err(|_| FrameError::Malformed("string is not UTF-8"))
}

fn get_opt_u64(src: &mut Bytes) -> Result<Option<u64>, FrameError> {
    match get_u8(src)? {
        0 => Ok(None),
        1 => Ok(Some(get_u64(src)?)),
        _ => Err(FrameError::Malformed("bad option tag")),
    }
}

/// A string field that names something (a service, an endpoint), shared through `names`.
fn get_name(src: &mut Bytes, names: &mut Names) -> Result<Arc<str>, FrameError> {
    need(src, 4)?;
    let len = src.get_u32() as usize;
    need(src, len)?;
    let name = names.name(&src[..len])?;
    src.advance(len);
    Ok(name)
}

fn get_opt_name(src: &mut Bytes, names: &mut Names) -> Result<Option<Arc<str>>, FrameError> {
    match get_u8(src)? {
        0 => Ok(None),
        1 => Ok(Some(get_name(src, names)?)),
        _ => Err(FrameError::Malformed("bad option tag")),
    }
}

fn get_map(src: &mut Bytes) -> Result<BTreeMap<String, String>, FrameError> {
    need(src, 4)?;
    let n = src.get_u32() as usize;
    // Each entry takes at least 8 bytes, so a count the payload cannot hold is rejected before
    // any work is done for it.
    if n.checked_mul(8).is_none_or(|min| min > src.remaining()) {
        return Err(FrameError::Malformed("map count exceeds frame"));
    }
    let mut m = BTreeMap::new();
    for _ in 0..n {
        let k = get_str(src)?;
        let v = get_str(src)?;
        m.insert(k, v);
    }
    Ok(m)
}

/// The most a decoder reserves ahead of the bytes that have arrived.
const READ_CHUNK: usize = 64 * 1024;

/// Frames longer than this draw on a [`LargeFrames`] budget while they arrive.
pub const LARGE_FRAME_BYTES: usize = 64 * 1024;

/// A budget of bytes for large frames being received, shared by the connections of one
/// transport: however many peers declare large frames and send them slowly, together they hold
/// at most this much. A large frame that does not fit is refused and its connection closed.
#[derive(Debug)]
pub struct LargeFrames {
    free: std::sync::atomic::AtomicUsize,
}

impl LargeFrames {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> std::sync::Arc<LargeFrames> {
        std::sync::Arc::new(LargeFrames {
            free: std::sync::atomic::AtomicUsize::new(bytes),
        })
    }

    fn take(&self, bytes: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                free.checked_sub(bytes)
            })
            .is_ok()
    }

    fn give(&self, bytes: usize) {
        self.free
            .fetch_add(bytes, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Splits a byte stream into [`Frame`]s, enforcing the size limit before buffering a frame.
#[derive(Debug)]
pub struct FrameCodec {
    max_frame_bytes: usize,
    /// The names this connection's frames carried.
    names: Names,
    /// The budget large frames draw on, and what this codec holds of it.
    large: Option<(std::sync::Arc<LargeFrames>, usize)>,
}

impl FrameCodec {
    /// A codec that rejects frames longer than `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> FrameCodec {
        FrameCodec {
            max_frame_bytes,
            names: Names::default(),
            large: None,
        }
    }

    /// A codec that also makes each frame over [`LARGE_FRAME_BYTES`] hold its length of
    /// `budget` until it is complete, refusing it ([`FrameError::Busy`]) when the budget is
    /// spent.
    pub fn with_budget(max_frame_bytes: usize, budget: std::sync::Arc<LargeFrames>) -> FrameCodec {
        FrameCodec {
            max_frame_bytes,
            names: Names::default(),
            large: Some((budget, 0)),
        }
    }

    fn release(&mut self) {
        if let Some((budget, held)) = &mut self.large {
            budget.give(std::mem::take(held));
        }
    }
}

impl Drop for FrameCodec {
    fn drop(&mut self) {
        self.release();
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(head) = src.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        let total = 4 + len;
        if let Some((budget, held)) = &mut self.large {
            if len > LARGE_FRAME_BYTES && src.len() < total && *held == 0 {
                if !budget.take(len) {
                    return Err(FrameError::Busy { len });
                }
                *held = len;
            }
        }
        if src.len() < total {
            // Grow with the bytes that arrive, never to what the header claims: a peer that
            // declares 4 MiB and sends ten bytes costs ten bytes.
            src.reserve((total - src.len()).min(READ_CHUNK));
            return Ok(None);
        }
        self.release();
        src.advance(4);
        decode_payload_with(src.split_to(len).freeze(), &mut self.names).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(frame: Frame) {
        let mut buf = BytesMut::new();
        encode_frame(&frame, &mut buf, DEFAULT_MAX_FRAME_BYTES).expect("encodes");
        let mut codec = FrameCodec::new(DEFAULT_MAX_FRAME_BYTES);
        let got = codec.decode(&mut buf).expect("decodes").expect("complete");
        assert_eq!(got, frame);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_declared_length_reserves_only_what_has_arrived_plus_a_chunk() {
        let mut codec = FrameCodec::new(DEFAULT_MAX_FRAME_BYTES);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(DEFAULT_MAX_FRAME_BYTES as u32).to_be_bytes());
        buf.extend_from_slice(b"ten bytes.");
        assert!(codec.decode(&mut buf).expect("not an error yet").is_none());
        assert!(
            buf.capacity() <= 14 + READ_CHUNK,
            "reserved {} for a frame of which 14 bytes arrived",
            buf.capacity()
        );
    }

    #[test]
    fn large_frames_share_a_budget_while_they_arrive_and_give_it_back() {
        let budget = LargeFrames::new(3 << 20);
        let head = |n: usize| {
            let mut b = BytesMut::new();
            b.extend_from_slice(&(n as u32).to_be_bytes());
            b.extend_from_slice(b"partial");
            b
        };
        let mut a = FrameCodec::with_budget(DEFAULT_MAX_FRAME_BYTES, budget.clone());
        let mut b = FrameCodec::with_budget(DEFAULT_MAX_FRAME_BYTES, budget.clone());
        assert!(a.decode(&mut head(2 << 20)).expect("fits").is_none());
        assert!(matches!(
            b.decode(&mut head(2 << 20)),
            Err(FrameError::Busy { .. })
        ));
        assert!(b
            .decode(&mut head(1000))
            .expect("small frames need no budget")
            .is_none(),);
        drop(a);
        assert!(b.decode(&mut head(2 << 20)).expect("given back").is_none());
    }

    #[test]
    fn every_frame_kind_survives_the_wire() {
        let mut meta = BTreeMap::new();
        meta.insert("user".to_string(), "u1".to_string());
        roundtrip(Frame::Request(RequestFrame {
            id: 7,
            service: "service.account".into(),
            endpoint: "read".into(),
            headers: Headers {
                deadline_remaining: Some(Duration::from_millis(250)),
                request_id: RequestId(1),
                parent_request_id: Some(RequestId(2)),
                origin_service: Some("api.account".into()),
                origin_endpoint: None,
                trace_id: TraceId(3),
                span_id: SpanId(4),
                parent_span_id: Some(SpanId(5)),
                meta,
            },
            body: Bytes::from_static(b"{\"id\":\"a\"}"),
        }));
        roundtrip(Frame::Response(ResponseFrame {
            id: 7,
            result: Ok(Bytes::from_static(b"{}")),
        }));
        roundtrip(Frame::Response(ResponseFrame {
            id: 8,
            result: Err(Error::bad_request("missing_param", "no id").with_param("param", "id")),
        }));
        roundtrip(Frame::Cancel { id: 9 });
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut codec = FrameCodec::new(256);
            let mut buf = BytesMut::from(&bytes[..]);
            // Decode until the codec wants more bytes or reports an error: never a panic.
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
        }

        #[test]
        fn a_valid_frame_with_a_flipped_byte_decodes_or_errs(pos in 0usize..64, bit in 0u8..8) {
            let mut buf = BytesMut::new();
            let frame = Frame::Response(ResponseFrame {
                id: 3,
                result: Err(Error::bad_request("x", "y").with_param("k", "v")),
            });
            encode_frame(&frame, &mut buf, 1024).expect("encodes");
            let at = pos % buf.len();
            buf[at] ^= 1 << bit;
            let mut codec = FrameCodec::new(1024);
            let _ = codec.decode(&mut buf);
        }
    }

    #[test]
    fn a_connection_shares_the_names_its_frames_repeat_and_keeps_a_bounded_few() {
        let request = |service: &str| {
            Frame::Request(RequestFrame {
                id: 1,
                service: service.into(),
                endpoint: "read".into(),
                headers: Headers::default(),
                body: Bytes::new(),
            })
        };
        let mut codec = FrameCodec::new(DEFAULT_MAX_FRAME_BYTES);
        let mut decode = |frame: &Frame| {
            let mut buf = BytesMut::new();
            encode_frame(frame, &mut buf, DEFAULT_MAX_FRAME_BYTES).expect("encodes");
            match codec.decode(&mut buf).expect("decodes").expect("complete") {
                Frame::Request(r) => r,
                other => panic!("not a request: {other:?}"),
            }
        };
        let (a, b) = (decode(&request("svc.a")), decode(&request("svc.a")));
        assert!(Arc::ptr_eq(&a.service, &b.service));
        assert!(Arc::ptr_eq(&a.endpoint, &b.endpoint));
        for i in 0..100 {
            assert_eq!(
                &*decode(&request(&format!("svc.{i}"))).service,
                format!("svc.{i}")
            );
        }
        assert!(codec.names.kept.len() <= NAMES_KEPT);
    }

    #[test]
    fn a_frame_split_across_reads_decodes_once_whole() {
        let mut whole = BytesMut::new();
        encode_frame(&Frame::Cancel { id: 42 }, &mut whole, 1024).expect("encodes");
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::new();
        for (i, b) in whole.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let got = codec.decode(&mut buf).expect("no error on a partial frame");
            assert_eq!(got.is_some(), i == whole.len() - 1);
        }
    }

    #[test]
    fn oversize_declared_length_is_rejected_before_buffering() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&[0u8, 1, 0, 0][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_payload_is_malformed_not_a_panic() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 5, 1, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::Malformed(_))
        ));
    }
}
