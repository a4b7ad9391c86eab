//! The framework's behaviour, observed through its public interface inside turmoil (and once
//! over real TCP): one binary built from modules, as turmoil's own tests are.

mod account;
mod behaviour;
mod deadline;
mod determinism;
mod failures;
mod fanout;
mod hostile;
mod mechanisms;
mod overtaking;
mod storage;
mod support;
