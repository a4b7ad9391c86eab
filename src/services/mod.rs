//! Example services written on the framework: what a user copies.
pub mod account;
pub mod auth;
