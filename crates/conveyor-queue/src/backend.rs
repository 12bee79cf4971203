//! [`RedisBackend`]: the apalis 1.0 backend over a [`Queue`].
//!
//! Each backend value is one consumer. On its first poll it starts two tasks: a fetcher, which
//! takes jobs in batches (at most `fetch_batch` held fetched-but-not-started) and blocks on a
//! dedicated connection when there is nothing to do, and the lease keeper (see
//! [`keeper`](crate::keeper)). `poll_next` hands fetched jobs to the worker as typed tasks that
//! carry a [`JobContext`]; the backend's [`OutcomeLayer`] records each task's outcome.
//! Cloning a backend gives a fresh, unstarted consumer of the same queue, which is what the
//! apalis monitor needs to restart a worker.
//!
//! Redis hiccups never end the worker's stream: the fetcher logs them and retries with backoff.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::backend::finalize::Ephemeral;
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use apalis_core::worker::context::WorkerContext;
use conveyor_core::JobId;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::QueueConfig;
use crate::connection::BlockingConnection;
use crate::error::QueueError;
use crate::identity::worker_identity;
use crate::keeper::{self, KeeperHandle, KeeperMessage, retry_delay};
use crate::outcome::{JobContext, OutcomeLayer};
use crate::queue::{Ack, AckOutcome, FetchResult, FetchedJob, Queue};

/// An apalis backend that consumes one Conveyor queue.
///
/// ```ignore
/// let worker = WorkerBuilder::new("syncs")
///     .backend(queue.backend())
///     .concurrency(16)
///     .parallelize(tokio::spawn)
///     .catch_panic()
///     .build(handle_sync);   // async fn(SyncJob, JobContext) -> Result<(), JobError>
/// ```
pub struct RedisBackend<T> {
    queue: Queue<T>,
    hard_stop: CancellationToken,
    started: CancellationToken,
    state: Option<Consumer>,
}

impl<T> std::fmt::Debug for RedisBackend<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("queue", &self.queue.name())
            .field(
                "worker_id",
                &self.state.as_ref().map(|state| &state.worker_id),
            )
            .finish()
    }
}

impl<T> Clone for RedisBackend<T> {
    fn clone(&self) -> Self {
        RedisBackend {
            queue: self.queue.clone(),
            hard_stop: self.hard_stop.clone(),
            started: self.started.clone(),
            state: None,
        }
    }
}

/// The running parts of a started backend.
struct Consumer {
    worker_id: Arc<str>,
    keeper: KeeperHandle,
    keeper_receiver: Option<mpsc::UnboundedReceiver<KeeperMessage>>,
    jobs: mpsc::UnboundedReceiver<FetchedJob>,
    jobs_sender: Option<mpsc::UnboundedSender<FetchedJob>>,
    /// Room for fetched jobs not yet handed to the worker; bounds how many jobs this worker
    /// holds leased without running them.
    credits: Arc<Semaphore>,
    fetcher_stop: CancellationToken,
    keeper_stop: CancellationToken,
    fetcher: Option<JoinHandle<()>>,
    keeper_task: Option<JoinHandle<()>>,
    closing: Closing,
}

/// How long a stopping fetcher lets a fetch in flight finish before abandoning it.
const FETCH_STOP_GRACE: Duration = Duration::from_secs(2);

/// How long a closing consumer waits for its outcomes to reach Redis before it gives up.
const FLUSH_DEADLINE: Duration = Duration::from_secs(5);

enum Closing {
    Open,
    StoppingFetcher,
    /// Waiting for the keeper to commit the outcomes it holds, at most until the deadline.
    Flushing(oneshot::Receiver<()>, Pin<Box<tokio::time::Sleep>>),
    StoppingKeeper,
    Closed,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.fetcher_stop.cancel();
        self.keeper_stop.cancel();
    }
}

impl<T> RedisBackend<T> {
    /// A consumer of `queue`.
    pub fn new(queue: Queue<T>) -> Self {
        RedisBackend {
            queue,
            hard_stop: CancellationToken::new(),
            started: CancellationToken::new(),
            state: None,
        }
    }

    /// Cancels `started` once the worker first polls this backend, that is once the worker is
    /// running and can observe a shutdown request.
    pub fn with_started(mut self, started: CancellationToken) -> Self {
        self.started = started;
        self
    }

    /// Uses `hard_stop` as the "shutdown deadline passed" signal seen by
    /// [`JobContext::deadline_passed`].
    pub fn with_hard_stop(mut self, hard_stop: CancellationToken) -> Self {
        self.hard_stop = hard_stop;
        self
    }

    /// This consumer's worker identity (hostname-pid-ULID); `None` until it is polled or
    /// given to a worker.
    pub fn worker_id(&self) -> Option<&str> {
        self.state.as_ref().map(|state| &*state.worker_id)
    }

    fn consumer(&mut self) -> &mut Consumer {
        let config = self.queue.config();
        self.state.get_or_insert_with(|| {
            let (keeper, keeper_receiver) = KeeperHandle::new();
            let (jobs_sender, jobs) = mpsc::unbounded_channel();
            Consumer {
                worker_id: worker_identity().into(),
                keeper,
                keeper_receiver: Some(keeper_receiver),
                jobs,
                jobs_sender: Some(jobs_sender),
                credits: Arc::new(Semaphore::new(config.fetch_batch)),
                fetcher_stop: CancellationToken::new(),
                keeper_stop: CancellationToken::new(),
                fetcher: None,
                keeper_task: None,
                closing: Closing::Open,
            }
        })
    }
}

impl<T: Send + Sync + 'static> RedisBackend<T> {
    fn start(&mut self) {
        let queue = self.queue.clone();
        let consumer = self.consumer();
        if let (Some(receiver), Some(sender)) =
            (consumer.keeper_receiver.take(), consumer.jobs_sender.take())
        {
            consumer.keeper_task = Some(keeper::spawn(
                queue.clone(),
                consumer.keeper.clone(),
                receiver,
                consumer.keeper_stop.clone(),
            ));
            consumer.fetcher = Some(tokio::spawn(fetch_loop(
                queue,
                sender,
                consumer.credits.clone(),
                consumer.keeper.clone(),
                consumer.worker_id.clone(),
                consumer.fetcher_stop.clone(),
            )));
            tracing::info!(worker_id = %consumer.worker_id, "queue consumer started");
        }
        self.started.cancel();
    }
}

impl<T> Backend for RedisBackend<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    type Task = Task<T>;
    type Error = QueueError;

    fn poll_ready(
        &mut self,
        _cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        self.start();
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        self.start();
        let hard_stop = self.hard_stop.clone();
        let consumer = self.consumer();
        loop {
            let job = match consumer.jobs.poll_recv(cx) {
                Poll::Ready(Some(job)) => job,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            consumer.credits.add_permits(1);
            match into_task(job, consumer, &hard_stop) {
                Ok(task) => return Poll::Ready(Some(Ok(task))),
                Err(ack) => consumer.keeper.ack(ack),
            }
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        let Some(consumer) = self.state.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        loop {
            match &mut consumer.closing {
                Closing::Open => {
                    consumer.fetcher_stop.cancel();
                    consumer.closing = Closing::StoppingFetcher;
                }
                Closing::StoppingFetcher => {
                    if let Some(fetcher) = consumer.fetcher.as_mut()
                        && Pin::new(fetcher).poll(cx).is_pending()
                    {
                        return Poll::Pending;
                    }
                    consumer.fetcher = None;
                    // Jobs fetched but never started go back, without using an attempt.
                    let mut handed_back = 0;
                    while let Ok(job) = consumer.jobs.try_recv() {
                        consumer.keeper.ack(Ack::for_job(&job, AckOutcome::Release));
                        handed_back += 1;
                    }
                    if handed_back > 0 {
                        tracing::info!(worker_id = %consumer.worker_id, jobs = handed_back, "handing back unstarted jobs");
                    }
                    consumer.closing = Closing::Flushing(
                        consumer.keeper.flush(),
                        Box::pin(tokio::time::sleep(FLUSH_DEADLINE)),
                    );
                }
                Closing::Flushing(done, deadline) => {
                    if Pin::new(done).poll(cx).is_pending() {
                        if deadline.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        // Redis is unreachable: waiting longer would keep the process from
                        // exiting. The jobs whose outcomes are lost are redelivered when their
                        // leases run out.
                        tracing::warn!(worker_id = %consumer.worker_id, deadline = ?FLUSH_DEADLINE, "outcomes still uncommitted at the flush deadline; stopping anyway");
                    }
                    consumer.keeper_stop.cancel();
                    consumer.closing = Closing::StoppingKeeper;
                }
                Closing::StoppingKeeper => {
                    if let Some(task) = consumer.keeper_task.as_mut()
                        && Pin::new(task).poll(cx).is_pending()
                    {
                        return Poll::Pending;
                    }
                    consumer.keeper_task = None;
                    consumer.closing = Closing::Closed;
                    tracing::info!(worker_id = %consumer.worker_id, still_held = consumer.keeper.in_flight(), "queue consumer stopped");
                }
                Closing::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl<T> BackendConfig for RedisBackend<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    type Args = T;
    type Id = JobId;
    type Kind = Ephemeral;
    type Config = QueueConfig;
    type Layer = OutcomeLayer;

    fn config(&self) -> &Self::Config {
        self.queue.config()
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        let backoff = self.queue.config().backoff.clone();
        OutcomeLayer {
            keeper: self.consumer().keeper.clone(),
            backoff,
        }
    }
}

/// Builds the apalis task of a fetched job, or the outcome to record if it cannot run.
fn into_task<T: DeserializeOwned>(
    job: FetchedJob,
    consumer: &Consumer,
    hard_stop: &CancellationToken,
) -> Result<Task<T>, Ack> {
    let unusable = |job: &FetchedJob, message: String| {
        Ack::for_job(
            job,
            AckOutcome::Abort {
                kind: "bad_payload".to_owned(),
                message,
            },
        )
    };
    let job_id: JobId = match job.job_id.parse() {
        Ok(job_id) => job_id,
        Err(err) => return Err(unusable(&job, format!("unreadable job id: {err}"))),
    };
    let args: T = match serde_json::from_str(&job.payload) {
        Ok(args) => args,
        Err(err) => {
            tracing::warn!(%job_id, error = %err, "dead-lettering a job whose payload does not parse");
            return Err(unusable(&job, format!("payload does not parse: {err}")));
        }
    };
    let context = JobContext {
        job_id,
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        token: job.token,
        worker_id: consumer.worker_id.clone(),
        hard_stop: hard_stop.clone(),
    };
    // apalis counts attempts from 0 and adds one when the task starts; start it one below the
    // delivery count kept in Redis so both agree.
    Ok(TaskBuilder::new(args)
        .task_id(TaskId::from_string(job.job_id))
        .attempt(job.attempt.saturating_sub(1) as usize)
        .max_attempts(job.max_attempts as usize)
        .data(context)
        .build())
}

async fn fetch_loop<T>(
    queue: Queue<T>,
    sender: mpsc::UnboundedSender<FetchedJob>,
    credits: Arc<Semaphore>,
    keeper: KeeperHandle,
    worker_id: Arc<str>,
    stop: CancellationToken,
) {
    let batch = queue.config().fetch_batch;
    let mut blocking: Option<BlockingConnection> = None;
    let mut failures = 0u32;
    loop {
        // Wait until at least half a batch has room: fetching a few jobs whenever one slot
        // frees up would spend a script call per handful of jobs. The buffer still holds the
        // other half meanwhile, so the worker never starves.
        let low_water = (batch / 2).max(1) as u32;
        let permit = tokio::select! {
            permit = credits.acquire_many(low_water) => permit,
            () = stop.cancelled() => return,
        };
        let Ok(permit) = permit else { return };
        permit.forget();
        let mut wanted = low_water as usize;
        while wanted < batch {
            match credits.try_acquire() {
                Ok(permit) => {
                    permit.forget();
                    wanted += 1;
                }
                Err(_) => break,
            }
        }
        if stop.is_cancelled() {
            return;
        }
        // A fetch normally answers in milliseconds; one stuck on an unreachable Redis is given
        // up shortly after a stop, so shutdown never waits for Redis to come back. (Jobs such an
        // abandoned fetch may still have leased come back when their leases run out.)
        let fetched = tokio::select! {
            biased;
            result = queue.fetch(wanted, &worker_id) => result,
            () = async {
                stop.cancelled().await;
                tokio::time::sleep(FETCH_STOP_GRACE).await;
            } => {
                tracing::warn!(queue = queue.name(), "a fetch did not answer after the stop; abandoning it");
                return;
            }
        };
        match fetched {
            Ok(fetched) => {
                failures = 0;
                let got = fetched.jobs.len();
                credits.add_permits(wanted - got);
                let wait = idle_wait(&fetched, queue.config().idle_wait);
                for job in fetched.jobs {
                    keeper.track(&job.job_id, job.token);
                    if let Err(mpsc::error::SendError(job)) = sender.send(job) {
                        keeper.ack(Ack::for_job(&job, AckOutcome::Release));
                    }
                }
                if got < wanted && !wait.is_zero() {
                    wait_for_work(&queue, &mut blocking, wait, &stop).await;
                }
            }
            Err(err) => {
                credits.add_permits(wanted);
                failures += 1;
                let delay = retry_delay(failures);
                tracing::warn!(queue = queue.name(), error = %err, retry_in = ?delay, "fetching jobs failed");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}

/// How long an idle worker may block: until the next scheduled job is due or the earliest
/// lease runs out (it may have to be reclaimed), and never longer than `longest`.
fn idle_wait(fetched: &FetchResult, longest: Duration) -> Duration {
    let mut wait = longest;
    for at in [fetched.next_due_ms, fetched.next_lease_expiry_ms]
        .into_iter()
        .flatten()
    {
        let until = Duration::from_millis((at - fetched.now_ms).max(0) as u64);
        wait = wait.min(until + Duration::from_millis(1));
    }
    wait
}

/// Blocks until a push signals new work, `wait` passes, or the fetcher stops.
async fn wait_for_work<T>(
    queue: &Queue<T>,
    blocking: &mut Option<BlockingConnection>,
    wait: Duration,
    stop: &CancellationToken,
) {
    if blocking.is_none() {
        match queue.inner.target.blocking(queue.config().idle_wait).await {
            Ok(connection) => *blocking = Some(connection),
            Err(err) => {
                tracing::warn!(queue = queue.name(), error = %err, "opening the waiting connection failed");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.cancelled() => {}
                }
                return;
            }
        }
    }
    let Some(connection) = blocking.as_mut() else {
        return;
    };
    let signal = &queue.keys().signal;
    tokio::select! {
        result = connection.wait(signal, wait) => {
            if let Err(err) = result {
                tracing::warn!(queue = queue.name(), error = %err, "waiting for jobs failed; reconnecting");
                *blocking = None;
            }
        }
        () = stop.cancelled() => {
            // The blocked command may still be answered; this connection is not reused.
            *blocking = None;
        }
    }
}
