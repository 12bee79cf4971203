//! The job kinds this worker runs, one module per queue.
//!
//! Each module exposes a `run` future that serves its queue until the shutdown signal and then
//! drains gracefully; [`crate::run`] starts them side by side under one supervisor. Adding a
//! kind (webhook deliveries, the scheduler's task) is a new module and one line there.

pub(crate) mod sync;
