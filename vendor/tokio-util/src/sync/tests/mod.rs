#[cfg(loom)]
mod loom_cancellation_token;
