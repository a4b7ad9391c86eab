//! Middleware on both sides of a call, composed in the order added.
//!
//! A middleware wraps the rest of the chain: it sees the request, may answer itself (auth,
//! shedding), and sees the result on the way back. Server middleware wraps the endpoint's
//! handler; client middleware wraps the transport send, after an instance has been picked, so it
//! can see which instance served the call.

use std::sync::Arc;

use bytes::Bytes;

use crate::framework::context::Context;
use crate::framework::error::Error;
use crate::framework::service::Endpoint;
use crate::framework::transport::BoxFuture;

/// A request as server middleware sees it.
#[derive(Debug, Clone)]
pub struct ServerRequest {
    /// The service it was sent to.
    pub service: Arc<str>,
    /// The endpoint it names.
    pub endpoint: Arc<str>,
    /// The serialized body.
    pub body: Bytes,
}

/// Wraps the handling of every request a server receives.
pub trait ServerMiddleware: Send + Sync + 'static {
    /// Handles `req`, usually by calling `next.run(ctx, req)`.
    fn handle<'a>(
        &'a self,
        ctx: Context,
        req: ServerRequest,
        next: ServerNext<'a>,
    ) -> BoxFuture<'a, Result<Bytes, Error>>;
}

/// The rest of the server chain.
#[derive(Clone, Copy)]
pub struct ServerNext<'a> {
    chain: &'a [Arc<dyn ServerMiddleware>],
    endpoint: &'a Endpoint,
}

impl<'a> ServerNext<'a> {
    pub(crate) fn new(chain: &'a [Arc<dyn ServerMiddleware>], endpoint: &'a Endpoint) -> Self {
        ServerNext { chain, endpoint }
    }

    /// Runs the next middleware, or the handler after the last one.
    pub fn run(self, ctx: Context, req: ServerRequest) -> BoxFuture<'a, Result<Bytes, Error>> {
        match self.chain.split_first() {
            Some((first, rest)) => first.handle(
                ctx,
                req,
                ServerNext {
                    chain: rest,
                    endpoint: self.endpoint,
                },
            ),
            None => self.endpoint.invoke(ctx, req.body),
        }
    }
}

/// A call as client middleware sees it, once an instance has been picked.
#[derive(Debug, Clone)]
pub struct OutboundCall {
    /// Target service.
    pub service: Arc<str>,
    /// Target endpoint.
    pub endpoint: Arc<str>,
    /// The instance picked to serve it.
    pub instance: Arc<str>,
    /// That instance's address.
    pub addr: Arc<str>,
    /// The serialized body.
    pub body: Bytes,
}

/// Wraps every call a client makes.
pub trait ClientMiddleware: Send + Sync + 'static {
    /// Makes `call`, usually by calling `next.run(ctx, call)`.
    fn call<'a>(
        &'a self,
        ctx: Context,
        call: OutboundCall,
        next: ClientNext<'a>,
    ) -> BoxFuture<'a, Result<Bytes, Error>>;
}

/// The rest of the client chain; its end is the transport.
pub struct ClientNext<'a> {
    chain: &'a [Arc<dyn ClientMiddleware>],
    end: &'a (dyn Fn(Context, OutboundCall) -> BoxFuture<'a, Result<Bytes, Error>> + Send + Sync),
}

impl<'a> ClientNext<'a> {
    pub(crate) fn new(
        chain: &'a [Arc<dyn ClientMiddleware>],
        end: &'a (dyn Fn(Context, OutboundCall) -> BoxFuture<'a, Result<Bytes, Error>>
                 + Send
                 + Sync),
    ) -> Self {
        ClientNext { chain, end }
    }

    /// Runs the next middleware, or the transport after the last one.
    pub fn run(self, ctx: Context, call: OutboundCall) -> BoxFuture<'a, Result<Bytes, Error>> {
        match self.chain.split_first() {
            Some((first, rest)) => first.call(
                ctx,
                call,
                ClientNext {
                    chain: rest,
                    end: self.end,
                },
            ),
            None => (self.end)(ctx, call),
        }
    }
}
