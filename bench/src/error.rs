//! The harness's error type. Any of these voids the run: the caller prints it and exits
//! non-zero. A system under test that fails is not an error here; its failure is recorded in
//! the results (see [`crate::phase::PhaseReport::error`]).

/// Why a benchmark run could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The private redis-server could not be started; install redis-server (`just setup`).
    #[error("starting the benchmark's redis-server: {0}")]
    RedisServer(#[from] conveyor_testkit::TestkitError),
    /// The harness's own Redis connection failed mid-run; rerun.
    #[error("talking to the benchmark's redis-server: {0}")]
    Redis(#[from] redis::RedisError),
    /// A child process could not be started, timed out or printed no report; its output on
    /// stderr says why.
    #[error("{system} {phase}: {detail}")]
    Child {
        /// The system under test.
        system: String,
        /// The phase (push, push-bulk, drain).
        phase: String,
        /// What went wrong.
        detail: String,
    },
    /// The command line was not understood; fix the arguments.
    #[error("{0}")]
    Usage(String),
    /// Something the benchmark needs is missing (e.g. node_modules); the message says how to
    /// get it.
    #[error("{0}")]
    Missing(String),
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A system under test failed in a way the child cannot report as a result (e.g. it could
    /// not connect at all).
    #[error("{0}")]
    System(String),
}

impl BenchError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let context = context.into();
        move |source| BenchError::Io { context, source }
    }
}
