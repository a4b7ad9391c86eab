//! Fuzz target: any bytes as what a peer sends to a service port, through the transport's frame
//! decoding (`src/framework/transport/frame.rs`): the stream codec (`FrameCodec`, with the
//! large-frame budget a listener gives it), fed in small chunks as TCP delivers them, and the
//! payload decoder (`decode_payload`) on the bytes as one payload. A bad frame must be a
//! `FrameError`; a panic is a bug. A payload that decodes must encode and decode back to itself.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use windtunnel::framework::transport::frame::{
    decode_payload, encode_frame, FrameCodec, LargeFrames, DEFAULT_MAX_FRAME_BYTES,
    LARGE_FRAME_BYTES,
};

fuzz_target!(|data: &[u8]| {
    // The stream: the first byte picks the chunk size, so the fuzzer explores frames split
    // across reads at every offset.
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 16) + 1;
    let budget = LargeFrames::new(4 * LARGE_FRAME_BYTES);
    let mut codec = FrameCodec::with_budget(DEFAULT_MAX_FRAME_BYTES, budget);
    let mut src = BytesMut::new();
    'stream: for piece in rest.chunks(chunk) {
        src.extend_from_slice(piece);
        loop {
            match codec.decode(&mut src) {
                Ok(Some(_frame)) => continue,
                Ok(None) => break,
                Err(_) => break 'stream, // the connection would be closed here
            }
        }
    }
    drop(codec); // returns what it held of the budget

    // One payload: if it decodes, it round-trips (within the limit; past it, encode refuses).
    if data.len() > DEFAULT_MAX_FRAME_BYTES {
        return;
    }
    if let Ok(frame) = decode_payload(Bytes::copy_from_slice(data)) {
        let mut buf = BytesMut::new();
        encode_frame(&frame, &mut buf, DEFAULT_MAX_FRAME_BYTES)
            .expect("a decoded payload fits the limit it was decoded under");
        let again = decode_payload(buf.split_off(4).freeze()).expect("re-encoded frame decodes");
        assert_eq!(again, frame, "decode(encode(frame)) == frame");
    }
});
