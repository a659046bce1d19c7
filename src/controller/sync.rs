//! Batched status sync. One loop per region and queue reads the jobs of every in-flight
//! resource from `ListJobs` pages and wakes only the resources whose job changed, so
//! following a thousand jobs costs a few dozen calls per round instead of a thousand.
//! Push events (see [`crate::events`]) feed the same store. While they flow, the loops
//! only read jobs that have had no news for a while (see [`SyncIntervals::staleness`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::channel::mpsc;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::{Notify, watch};

use crate::api::MediaConvertJob;
use crate::aws::mediaconvert::LIST_PAGE_SIZE;
use crate::aws::{AwsError, JobSnapshot, MediaConvert};
use crate::validate::offline::RESERVED_METADATA_PREFIX;

/// Bounds of the adaptive interval between two rounds of one loop.
#[derive(Clone, Copy, Debug)]
pub struct SyncIntervals {
    /// Interval while jobs change.
    pub min: Duration,
    /// Interval reached by doubling while nothing changes.
    pub max: Duration,
    /// Set when job events arrive from a queue. A round then reads only the jobs whose
    /// latest news (an event, a read, or for a new job its creation) is older than this,
    /// and the interval follows when the next job becomes due instead of doubling.
    pub staleness: Option<Duration>,
}

/// Region and queue of a job: one sync loop serves each.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct QueueKey {
    pub region: String,
    /// Queue name or ARN.
    pub queue: String,
}

/// Queue of jobs that name none.
pub const DEFAULT_QUEUE: &str = "Default";

/// A job the sync follows for a resource.
#[derive(Clone, Debug)]
pub struct TrackedJob {
    pub object: ObjectRef<MediaConvertJob>,
    /// Epoch seconds at which MediaConvert created the job, when known.
    pub created_at: Option<i64>,
    /// MediaConvert status last written to the resource.
    pub status: String,
}

/// Latest known state of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// `None` when MediaConvert has no job with this id.
    pub snapshot: Option<JobSnapshot>,
    /// Epoch milliseconds of the state: the event's timestamp or the time of the read.
    pub at_ms: i64,
    /// Increases with every stored observation, so a writer can confirm which one it wrote.
    pub seq: u64,
}

/// Result of reporting a job state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored, and the resource was asked to reconcile; wait for [`StatusSync::written`]
    /// with this sequence number.
    Stored(u64),
    /// Older than or equal to what is known, so nothing changes.
    Stale,
    /// No tracked resource owns the job, and its user metadata names none.
    Unknown,
}

/// Most observations kept for jobs that no resource tracks yet, such as events that
/// arrive before the resource records its job id.
const MAX_UNTRACKED: usize = 10_000;

/// Most finished jobs remembered, so that their late events change nothing.
const MAX_FINISHED: usize = 10_000;

/// Written sequence number of a finished job: every observation counts as written.
const FINISHED: u64 = u64::MAX;

/// State shared by the sync loops, the event reader and the reconciles.
pub struct StatusSync {
    mediaconvert: Arc<dyn MediaConvert>,
    intervals: SyncIntervals,
    state: Mutex<State>,
    triggers: Mutex<Vec<Trigger>>,
    /// Sequence number of the latest observation written to a resource, per job.
    written: watch::Sender<HashMap<String, u64>>,
}

#[derive(Default)]
struct State {
    queues: HashMap<QueueKey, Queue>,
    /// Queue of each tracked job.
    queue_of: HashMap<String, QueueKey>,
    observations: HashMap<String, Observation>,
    untracked: HashSet<String>,
    /// Finished jobs, oldest first, up to [`MAX_FINISHED`].
    finished: VecDeque<String>,
    /// Epoch milliseconds up to which each job's state is known: the time of its latest
    /// read or event, and for a job not heard of yet, its creation.
    heard_ms: HashMap<String, i64>,
    next_seq: u64,
}

struct Queue {
    jobs: HashMap<String, TrackedJob>,
    wake: Arc<Notify>,
}

/// Channel into the controller of one namespace, or of all when `namespace` is `None`.
struct Trigger {
    namespace: Option<String>,
    sender: mpsc::UnboundedSender<ObjectRef<MediaConvertJob>>,
}

impl StatusSync {
    pub fn new(mediaconvert: Arc<dyn MediaConvert>, intervals: SyncIntervals) -> Self {
        Self {
            mediaconvert,
            intervals,
            state: Mutex::default(),
            triggers: Mutex::default(),
            written: watch::Sender::new(HashMap::new()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns the stream of resources to reconcile because their job changed, for the
    /// controller of `namespace` (all namespaces when `None`).
    pub fn subscribe(
        &self,
        namespace: Option<String>,
    ) -> mpsc::UnboundedReceiver<ObjectRef<MediaConvertJob>> {
        let (sender, receiver) = mpsc::unbounded();
        let mut triggers = self
            .triggers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        triggers.push(Trigger { namespace, sender });
        receiver
    }

    fn trigger(&self, object: &ObjectRef<MediaConvertJob>) {
        let mut triggers = self
            .triggers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        triggers.retain(|trigger| !trigger.sender.is_closed());
        let target = triggers.iter().find(|trigger| match &trigger.namespace {
            Some(namespace) => object.namespace.as_ref() == Some(namespace),
            None => true,
        });
        if let Some(trigger) = target {
            // A closed receiver means its controller stopped; the resource then waits for
            // the next leader's initial reconcile.
            let _ = trigger.sender.unbounded_send(object.clone());
        }
    }

    /// Latest known state of `job_id`.
    pub fn observation(&self, job_id: &str) -> Option<Observation> {
        self.state().observations.get(job_id).cloned()
    }

    /// Follows `job_id` for a resource from now on, starting the loop of its queue when
    /// this is the queue's first job.
    pub fn track(self: &Arc<Self>, job_id: &str, key: QueueKey, job: TrackedJob) {
        let mut state = self.state();
        state.untracked.remove(job_id);
        if let Some(previous) = state.queue_of.get(job_id)
            && *previous != key
        {
            let previous = previous.clone();
            if let Some(queue) = state.queues.get_mut(&previous) {
                queue.jobs.remove(job_id);
            }
        }
        state.queue_of.insert(job_id.to_string(), key.clone());
        if !state.heard_ms.contains_key(job_id) {
            let created_ms = job.created_at.map_or_else(now_ms, |seconds| seconds * 1000);
            state.heard_ms.insert(job_id.to_string(), created_ms);
        }
        let queue = match state.queues.get_mut(&key) {
            Some(queue) => queue,
            None => {
                let wake = Arc::new(Notify::new());
                tokio::spawn(self.clone().run(key.clone(), wake.clone()));
                tracing::info!(region = %key.region, queue = %key.queue, "Started status sync");
                state.queues.entry(key).or_insert(Queue {
                    jobs: HashMap::new(),
                    wake,
                })
            }
        };
        if queue.jobs.insert(job_id.to_string(), job).is_none() {
            queue.wake.notify_one();
        }
    }

    /// Stops following `job_id`, whose resource finished or went away. Its observations
    /// count as written from now on, and later ones are ignored.
    pub fn forget(&self, job_id: &str) {
        let mut state = self.state();
        if let Some(key) = state.queue_of.remove(job_id)
            && let Some(queue) = state.queues.get_mut(&key)
        {
            queue.jobs.remove(job_id);
        }
        state.observations.remove(job_id);
        state.untracked.remove(job_id);
        state.heard_ms.remove(job_id);
        if self.is_finished(job_id) {
            return;
        }
        state.finished.push_back(job_id.to_string());
        let expired = if state.finished.len() > MAX_FINISHED {
            state.finished.pop_front()
        } else {
            None
        };
        self.written.send_modify(|written| {
            written.insert(job_id.to_string(), FINISHED);
            if let Some(expired) = expired {
                written.remove(&expired);
            }
        });
    }

    /// Records that the resource of `job_id` now shows the observation numbered `seq`.
    pub fn mark_written(&self, job_id: &str, seq: u64) {
        self.written.send_if_modified(|written| {
            let entry = written.entry(job_id.to_string()).or_default();
            if *entry >= seq {
                return false;
            }
            *entry = seq;
            true
        });
    }

    /// Waits until the resource of `job_id` shows the observation numbered `seq` or a
    /// later one. Returns `false` when `timeout` passes first.
    pub async fn written(&self, job_id: &str, seq: u64, timeout: Duration) -> bool {
        let mut receiver = self.written.subscribe();
        let done = receiver.wait_for(|written| written.get(job_id).is_some_and(|at| *at >= seq));
        matches!(tokio::time::timeout(timeout, done).await, Ok(Ok(_)))
    }

    /// Reports whether the resource of `job_id` has recorded that its job finished.
    pub fn is_finished(&self, job_id: &str) -> bool {
        self.written.borrow().get(job_id) == Some(&FINISHED)
    }

    /// Number of jobs the sync follows.
    pub fn tracked(&self) -> usize {
        self.state().queue_of.len()
    }

    /// Stores a newer state of `job_id` and queues its resource for a reconcile. A state older
    /// than the stored one, by status order and then by time, is ignored, so events that
    /// arrive late or twice never move a job backwards.
    pub fn observe(&self, job_id: &str, mut snapshot: Option<JobSnapshot>, at_ms: i64) -> Outcome {
        let mut state = self.state();
        if self.is_finished(job_id) {
            return Outcome::Stale;
        }
        let tracked = state.queue_of.get(job_id).and_then(|key| {
            let queue = state.queues.get(key)?;
            Some(queue.jobs.get(job_id)?.object.clone())
        });

        let object = match tracked {
            Some(object) => {
                // User metadata only serves to find the resource of an untracked job, and
                // thousands of running jobs would each keep a copy.
                if let Some(snapshot) = snapshot.as_mut() {
                    snapshot.user_metadata = BTreeMap::new();
                }
                object
            }
            None => match snapshot.as_ref().and_then(owner_of) {
                Some(object) if state.untracked.len() < MAX_UNTRACKED => {
                    state.untracked.insert(job_id.to_string());
                    object
                }
                _ => return Outcome::Unknown,
            },
        };
        // Even a stale state shows that the job was alive at its time.
        state.heard(job_id, at_ms.min(now_ms()));
        if let Some(known) = state.observations.get(job_id)
            && !is_newer(&snapshot, at_ms, known)
        {
            return Outcome::Stale;
        }

        state.next_seq += 1;
        let seq = state.next_seq;
        let observation = Observation {
            snapshot,
            at_ms,
            seq,
        };
        state.observations.insert(job_id.to_string(), observation);
        drop(state);
        self.trigger(&object);
        Outcome::Stored(seq)
    }

    /// Runs the loop of one queue. It makes no call while the queue has no tracked job.
    /// Without events it reads every `min` interval while jobs change and backs off to
    /// `max` while none do. With events it reads only stale jobs, when the next one falls
    /// due, and never closer than `min`.
    async fn run(self: Arc<Self>, key: QueueKey, wake: Arc<Notify>) {
        let SyncIntervals { min, max, .. } = self.intervals;
        let mut interval = min;
        let mut status_rounds_left = 0;
        loop {
            let Selection { jobs, next_due } = self.jobs_of(&key);
            if jobs.is_empty() {
                match next_due {
                    // Only with events, when every job had news lately.
                    Some(due) => tokio::time::sleep(due.max(min)).await,
                    None => {
                        wake.notified().await;
                        interval = min;
                        tokio::time::sleep(min).await;
                    }
                }
                continue;
            }
            let events = self.intervals.staleness.is_some();
            let depth = if status_rounds_left > 0 && interval == min {
                status_rounds_left -= 1;
                Depth::Status
            } else {
                let worth = !events && status_rounds_pay(&jobs);
                status_rounds_left = if worth { STATUS_ROUNDS } else { 0 };
                Depth::Full
            };
            match self.round(&key, jobs, depth).await {
                Ok(changes) => {
                    if changes.moved + changes.progressed > 0 {
                        tracing::debug!(region = %key.region, queue = %key.queue, ?depth, moved = changes.moved, progressed = changes.progressed, "Synced job states");
                    }
                    interval = if events {
                        min
                    } else if depth == Depth::Status {
                        // A status round reads no progress, so only a full round without
                        // changes lengthens the interval.
                        min
                    } else {
                        changes.next_interval(interval, self.intervals, status_rounds_left > 0)
                    };
                }
                Err(error) => {
                    tracing::warn!(%error, region = %key.region, queue = %key.queue, "Status sync failed; retrying");
                    interval = interval.saturating_mul(2).min(max);
                }
            }
            if events {
                // The next selection waits for the next stale job. A new job is not
                // stale, so it does not shorten the wait.
                tokio::time::sleep(interval).await;
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                // A new job shortens the wait, but rounds never run closer than `min`.
                () = wake.notified() => {
                    interval = min;
                    tokio::time::sleep(min).await;
                }
            }
        }
    }

    /// Jobs of `key` that the next round reads (see [`State::select`]).
    fn jobs_of(&self, key: &QueueKey) -> Selection {
        self.state().select(key, now_ms(), self.intervals.staleness)
    }

    /// Reads the state of the jobs in `missing` with as few calls as it can, stores what
    /// changed and returns how many changed.
    ///
    /// Jobs only move forward: SUBMITTED, PROGRESSING, then one of COMPLETE, ERROR and
    /// CANCELED. So the in-flight listings are read first, each only while some job not
    /// yet seen may be in it, newest first and only back to the oldest such job. Jobs not
    /// found there have finished and are looked for in the terminal listings, at most as
    /// many pages as they fill. Whatever is still missing is read with `GetJob`.
    ///
    /// A [`Depth::Status`] round skips the PROGRESSING listing, the longest one, except to
    /// find jobs that just left SUBMITTED. Running jobs not found finished keep their state.
    async fn round(
        &self,
        key: &QueueKey,
        mut missing: HashMap<String, TrackedJob>,
        depth: Depth,
    ) -> Result<Changes, AwsError> {
        let mut changes = Changes::default();
        let mut record = |id: &str, mut snapshot: Option<JobSnapshot>| {
            // A round reads only tracked jobs, whose stored state has no user metadata (see
            // `observe`). Dropping it here lets an unchanged job skip `observe`.
            if let Some(snapshot) = snapshot.as_mut() {
                snapshot.user_metadata = BTreeMap::new();
            }
            self.state().heard(id, now_ms());
            let known = self.observation(id).map(|known| known.snapshot);
            if known.as_ref() == Some(&snapshot) {
                return;
            }
            let status = |snapshot: &Option<JobSnapshot>| {
                snapshot.as_ref().map(|snapshot| snapshot.status.clone())
            };
            let moved = known.as_ref().map(status) != Some(status(&snapshot));
            if let Outcome::Stored(_) = self.observe(id, snapshot, now_ms()) {
                if moved {
                    changes.moved += 1;
                } else {
                    changes.progressed += 1;
                }
            }
        };
        let mut take = |missing: &mut HashMap<String, TrackedJob>, found: Vec<JobSnapshot>| {
            for snapshot in found {
                let id = snapshot.id.clone();
                missing.remove(&id);
                record(&id, Some(snapshot));
            }
        };

        let submitted = |job: &TrackedJob| rank(&job.status) == 0;
        let found = self
            .scan(key, "SUBMITTED", &missing, submitted, usize::MAX)
            .await?;
        take(&mut missing, found);
        // Jobs tracked as SUBMITTED that the listing no longer shows have started or finished.
        // Only a status round reads them separately, because a full round reads PROGRESSING.
        let started: HashSet<String> = match depth {
            Depth::Full => HashSet::new(),
            Depth::Status => missing
                .iter()
                .filter(|(_, job)| submitted(job))
                .map(|(id, _)| id.clone())
                .collect(),
        };
        if depth == Depth::Full {
            let found = self
                .scan(key, "PROGRESSING", &missing, |_| true, usize::MAX)
                .await?;
            take(&mut missing, found);
        }

        let running_pages = missing.len().div_ceil(LIST_PAGE_SIZE as usize);
        for status in ["COMPLETE", "ERROR", "CANCELED"] {
            if missing.is_empty() {
                break;
            }
            let max_pages = match depth {
                // Every job still missing has finished, and a page costs no more than
                // reading one of them with `GetJob`.
                Depth::Full => missing.len(),
                // Most missing jobs still run. A status round reads no more pages than the
                // PROGRESSING listing would take, and the next full round finds the rest.
                Depth::Status => running_pages,
            };
            let found = self
                .scan(key, status, &missing, |_| true, max_pages)
                .await?;
            take(&mut missing, found);
        }

        if depth == Depth::Status {
            missing.retain(|id, _| started.contains(id));
            let found = self
                .scan(key, "PROGRESSING", &missing, |_| true, usize::MAX)
                .await?;
            take(&mut missing, found);
        }
        for id in missing.into_keys() {
            let snapshot = self.mediaconvert.get_job(&key.region, &id).await?;
            record(&id, snapshot);
        }
        Ok(changes)
    }

    /// Reads the `status` listing of `key`, newest first, and returns the jobs of
    /// `missing` it shows. It stops when no job of `missing` that `may_hold` admits is left
    /// unseen, once a page reaches back before the oldest of them, or after `max_pages`.
    async fn scan(
        &self,
        key: &QueueKey,
        status: &str,
        missing: &HashMap<String, TrackedJob>,
        may_hold: impl Fn(&TrackedJob) -> bool,
        max_pages: usize,
    ) -> Result<Vec<JobSnapshot>, AwsError> {
        let mut wanted: HashSet<&str> = missing
            .iter()
            .filter(|(_, job)| may_hold(job))
            .map(|(id, _)| id.as_str())
            .collect();
        let oldest = missing
            .values()
            .filter(|job| may_hold(job))
            .map(|job| job.created_at)
            .min()
            .flatten();
        let mut found = Vec::new();
        let mut next_token = None;
        for _ in 0..max_pages {
            if wanted.is_empty() {
                break;
            }
            let page = self
                .mediaconvert
                .list_jobs(&key.region, Some(&key.queue), Some(status), next_token)
                .await?;
            let reached_oldest = oldest.is_some_and(|oldest| page.reaches_before(oldest));
            for job in page.jobs {
                if wanted.remove(job.id.as_str()) {
                    found.push(job);
                }
            }
            next_token = page.next_token;
            if reached_oldest || next_token.is_none() {
                break;
            }
        }
        Ok(found)
    }
}

/// Jobs a round reads, and when the next job falls due while none does.
#[derive(Debug, Default)]
struct Selection {
    jobs: HashMap<String, TrackedJob>,
    /// With a staleness window, the time until the first in-flight job that is not due yet
    /// becomes stale. `None` without a window, or when no such job exists.
    next_due: Option<Duration>,
}

impl State {
    /// Moves the time up to which the state of `job_id` is known forward to `at_ms`.
    fn heard(&mut self, job_id: &str, at_ms: i64) {
        let heard = self.heard_ms.entry(job_id.to_string()).or_insert(at_ms);
        *heard = (*heard).max(at_ms);
    }

    /// Selects the jobs of `key` whose state may still change. A job is known by its
    /// latest observation when there is one, because its resource may not have caught up
    /// yet. Jobs already seen finished, or gone, are left out until their resource records
    /// it, so a backlog of reconciles never makes the sync read them again. With a
    /// `staleness` window, jobs heard of within the window at `now_ms` are left out too.
    fn select(&self, key: &QueueKey, now_ms: i64, staleness: Option<Duration>) -> Selection {
        let Some(queue) = self.queues.get(key) else {
            return Selection::default();
        };
        let window_ms = staleness.map(|window| window.as_millis() as i64);
        let mut selection = Selection::default();
        let mut next_due_ms: Option<i64> = None;
        for (id, job) in &queue.jobs {
            let mut job = job.clone();
            match self.observations.get(id).map(|known| &known.snapshot) {
                Some(Some(snapshot)) if rank(&snapshot.status) == 2 => continue,
                Some(None) => continue,
                Some(Some(snapshot)) if rank(&snapshot.status) > rank(&job.status) => {
                    job.status = snapshot.status.clone();
                }
                _ => {}
            }
            let heard_ms = self.heard_ms.get(id).copied();
            if let (Some(window_ms), Some(heard_ms)) = (window_ms, heard_ms) {
                let due_in_ms = heard_ms + window_ms - now_ms;
                if due_in_ms > 0 {
                    next_due_ms = Some(next_due_ms.map_or(due_in_ms, |next| next.min(due_in_ms)));
                    continue;
                }
            }
            selection.jobs.insert(id.clone(), job);
        }
        selection.next_due =
            next_due_ms.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or_default()));
        selection
    }
}

/// Listings that a round reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Depth {
    /// Every listing a job may be in, which also returns each job's progress.
    Full,
    /// Listings that show a change of status: SUBMITTED, the terminal listings and,
    /// for jobs that just left SUBMITTED, PROGRESSING. The progress of running jobs, a
    /// page per 20 of them, is not read.
    Status,
}

/// Status rounds between two full rounds while jobs run. Progress is read every fourth
/// round and changes of status every round.
const STATUS_ROUNDS: u32 = 3;

/// Running jobs above which status rounds cost fewer calls than full rounds. A status
/// round reads at least one page of each of the three terminal listings, and a full
/// round one page of the PROGRESSING listing per 20 running jobs.
const STATUS_ROUNDS_FROM: usize = 4 * LIST_PAGE_SIZE as usize;

/// Reports whether status rounds between full rounds save calls for `jobs`.
fn status_rounds_pay(jobs: &HashMap<String, TrackedJob>) -> bool {
    let running = jobs.values().filter(|job| rank(&job.status) == 1).count();
    running > STATUS_ROUNDS_FROM
}

/// Changes found by one round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Changes {
    /// Jobs seen for the first time, or in another status than before.
    moved: usize,
    /// Jobs in the same status as before with other progress.
    progressed: usize,
}

impl Changes {
    /// Interval before the next round, after a full round. A job that changed status
    /// brings the next round to `min`, because others are likely to follow. Progress alone
    /// keeps `min` when status rounds follow, since they are cheap. Otherwise it lets the
    /// interval double up to four times `min`, so a queue full of long transcodes is read
    /// less often while its percentages rise. With no change at all it doubles up to `max`.
    fn next_interval(
        self,
        interval: Duration,
        intervals: SyncIntervals,
        status_rounds: bool,
    ) -> Duration {
        let SyncIntervals { min, max, .. } = intervals;
        let doubled = interval.saturating_mul(2);
        if self.moved > 0 || (self.progressed > 0 && status_rounds) {
            min
        } else if self.progressed > 0 {
            doubled.min(min.saturating_mul(4)).min(max).max(min)
        } else {
            doubled.min(max)
        }
    }
}

/// Order of MediaConvert statuses: a job never moves to a lower rank.
pub fn rank(status: &str) -> u8 {
    match status {
        "SUBMITTED" => 0,
        "PROGRESSING" | "STATUS_UPDATE" => 1,
        "COMPLETE" | "ERROR" | "CANCELED" => 2,
        _ => 0,
    }
}

/// Reports whether a state observed at `at_ms` is newer than `known`: a higher status
/// rank, or the same non-terminal rank at a later time. A job not found is final.
fn is_newer(snapshot: &Option<JobSnapshot>, at_ms: i64, known: &Observation) -> bool {
    let Some(known_snapshot) = &known.snapshot else {
        return false;
    };
    let Some(snapshot) = snapshot else {
        return true;
    };
    if *snapshot == *known_snapshot {
        return false;
    }
    let (new, old) = (rank(&snapshot.status), rank(&known_snapshot.status));
    new > old || (new == old && new < 2 && at_ms >= known.at_ms)
}

/// Resource named by the operator's user metadata on a job.
fn owner_of(snapshot: &JobSnapshot) -> Option<ObjectRef<MediaConvertJob>> {
    let field = |key: &str| {
        snapshot
            .user_metadata
            .get(&format!("{RESERVED_METADATA_PREFIX}{key}"))
    };
    let (namespace, name) = (field("namespace")?, field("name")?);
    Some(ObjectRef::new(name).within(namespace))
}

/// Current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_millisecond()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: &str, percent: Option<i32>) -> JobSnapshot {
        JobSnapshot {
            id: "1700000000000-abc123".into(),
            status: status.into(),
            percent_complete: percent,
            ..JobSnapshot::default()
        }
    }

    fn known(status: &str, percent: Option<i32>, at_ms: i64) -> Observation {
        Observation {
            snapshot: Some(job(status, percent)),
            at_ms,
            seq: 1,
        }
    }

    const INTERVALS: SyncIntervals = SyncIntervals {
        min: Duration::from_secs(5),
        max: Duration::from_secs(60),
        staleness: None,
    };

    fn next(moved: usize, progressed: usize, seconds: u64) -> u64 {
        let changes = Changes { moved, progressed };
        changes
            .next_interval(Duration::from_secs(seconds), INTERVALS, false)
            .as_secs()
    }

    #[test]
    fn status_change_reads_again_soon() {
        assert_eq!(next(1, 30, 60), 5);
    }

    #[test]
    fn progress_alone_stretches_interval_to_four_times_minimum() {
        assert_eq!(next(0, 30, 5), 10);
        assert_eq!(next(0, 30, 10), 20);
        assert_eq!(next(0, 30, 20), 20);
        assert_eq!(next(0, 30, 60), 20);
    }

    #[test]
    fn progress_keeps_minimum_before_status_rounds() {
        let changes = Changes {
            moved: 0,
            progressed: 30,
        };
        let next = changes.next_interval(Duration::from_secs(5), INTERVALS, true);
        assert_eq!(next, Duration::from_secs(5));
        let quiet = Changes::default().next_interval(Duration::from_secs(5), INTERVALS, true);
        assert_eq!(quiet, Duration::from_secs(10));
    }

    #[test]
    fn quiet_queue_backs_off_to_maximum() {
        assert_eq!(next(0, 0, 40), 60);
        assert_eq!(next(0, 0, 60), 60);
    }

    #[test]
    fn later_progress_replaces_earlier() {
        let known = known("PROGRESSING", Some(20), 1_000);
        assert!(is_newer(&Some(job("PROGRESSING", Some(40))), 2_000, &known));
    }

    #[test]
    fn earlier_progress_is_stale() {
        let known = known("PROGRESSING", Some(40), 2_000);
        assert!(!is_newer(
            &Some(job("PROGRESSING", Some(20))),
            1_000,
            &known
        ));
    }

    #[test]
    fn status_never_moves_back() {
        let known = known("PROGRESSING", Some(40), 1_000);
        assert!(!is_newer(&Some(job("SUBMITTED", None)), 5_000, &known));
    }

    #[test]
    fn terminal_state_is_final() {
        let known = known("COMPLETE", Some(100), 1_000);
        assert!(!is_newer(&Some(job("ERROR", None)), 5_000, &known));
        assert!(!is_newer(
            &Some(job("PROGRESSING", Some(90))),
            5_000,
            &known
        ));
    }

    #[test]
    fn terminal_state_replaces_progress_whatever_its_time() {
        let known = known("PROGRESSING", Some(40), 5_000);
        assert!(is_newer(&Some(job("COMPLETE", Some(100))), 1_000, &known));
    }

    #[test]
    fn duplicate_is_stale() {
        let known = known("PROGRESSING", Some(40), 1_000);
        assert!(!is_newer(
            &Some(job("PROGRESSING", Some(40))),
            2_000,
            &known
        ));
    }

    const NOW_MS: i64 = 1_764_900_000_000;
    const WINDOW: Option<Duration> = Some(Duration::from_secs(90));

    fn queue_key() -> QueueKey {
        QueueKey {
            region: "us-east-1".into(),
            queue: DEFAULT_QUEUE.into(),
        }
    }

    /// State with one tracked job per entry of `heard_ms`: its id and the epoch
    /// milliseconds of its latest news.
    fn state_with(heard_ms: &[(&str, i64)]) -> State {
        let mut state = State::default();
        let jobs = heard_ms.iter().map(|(id, _)| {
            let job = TrackedJob {
                object: ObjectRef::new(id),
                created_at: None,
                status: "PROGRESSING".into(),
            };
            (id.to_string(), job)
        });
        let queue = Queue {
            jobs: jobs.collect(),
            wake: Arc::new(Notify::new()),
        };
        state.queues.insert(queue_key(), queue);
        for (id, at_ms) in heard_ms {
            state.heard_ms.insert(id.to_string(), *at_ms);
        }
        state
    }

    fn selected(selection: &Selection) -> Vec<&str> {
        let mut ids: Vec<&str> = selection.jobs.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn without_events_every_job_is_read() {
        let state = state_with(&[("fresh", NOW_MS), ("old", NOW_MS - 600_000)]);
        let selection = state.select(&queue_key(), NOW_MS, None);
        assert_eq!(selected(&selection), ["fresh", "old"]);
        assert_eq!(selection.next_due, None);
    }

    #[test]
    fn with_events_only_stale_jobs_are_read() {
        let state = state_with(&[
            ("quiet", NOW_MS - 91_000),
            ("recent", NOW_MS - 30_000),
            ("exactly-due", NOW_MS - 90_000),
        ]);
        let selection = state.select(&queue_key(), NOW_MS, WINDOW);
        assert_eq!(selected(&selection), ["exactly-due", "quiet"]);
        assert_eq!(selection.next_due, Some(Duration::from_secs(60)));
    }

    #[test]
    fn fresh_jobs_wait_until_stale() {
        let state = state_with(&[("a", NOW_MS - 10_000), ("b", NOW_MS - 70_000)]);
        let selection = state.select(&queue_key(), NOW_MS, WINDOW);
        assert!(selection.jobs.is_empty());
        assert_eq!(selection.next_due, Some(Duration::from_secs(20)));
    }

    #[test]
    fn event_counts_as_news() {
        let mut state = state_with(&[("job", NOW_MS - 120_000)]);
        state.heard("job", NOW_MS - 5_000);
        let selection = state.select(&queue_key(), NOW_MS, WINDOW);
        assert!(selection.jobs.is_empty());
        assert_eq!(selection.next_due, Some(Duration::from_secs(85)));
    }

    #[test]
    fn late_event_does_not_move_news_back() {
        let mut state = state_with(&[("job", NOW_MS - 5_000)]);
        state.heard("job", NOW_MS - 300_000);
        assert_eq!(state.heard_ms["job"], NOW_MS - 5_000);
    }

    #[test]
    fn finished_job_is_not_read_even_when_stale() {
        let mut state = state_with(&[("done", NOW_MS - 600_000), ("running", NOW_MS)]);
        let observation = known("COMPLETE", Some(100), NOW_MS - 600_000);
        state.observations.insert("done".into(), observation);
        let selection = state.select(&queue_key(), NOW_MS, WINDOW);
        assert!(selection.jobs.is_empty());
        assert_eq!(selection.next_due, Some(Duration::from_secs(90)));
    }

    #[test]
    fn job_without_news_is_read() {
        let mut state = state_with(&[("job", NOW_MS)]);
        state.heard_ms.clear();
        let selection = state.select(&queue_key(), NOW_MS, WINDOW);
        assert_eq!(selected(&selection), ["job"]);
    }

    /// MediaConvert with jobs held in memory, newest first, that counts its reads.
    #[derive(Default)]
    struct MemoryMediaConvert {
        jobs: Mutex<Vec<JobSnapshot>>,
        /// `ListJobs` pages read, by status.
        pages: Mutex<HashMap<String, usize>>,
        gets: Mutex<usize>,
    }

    impl MemoryMediaConvert {
        fn set(&self, id: &str, status: &str, percent: i32) {
            let mut jobs = self.jobs.lock().unwrap();
            let job = jobs.iter_mut().find(|job| job.id == id).expect("job");
            job.status = status.into();
            job.percent_complete = Some(percent);
        }

        fn pages(&self, status: &str) -> usize {
            self.pages.lock().unwrap().get(status).copied().unwrap_or(0)
        }
    }

    #[async_trait::async_trait]
    impl MediaConvert for MemoryMediaConvert {
        async fn create_job(&self, _: &crate::aws::JobRequest) -> Result<JobSnapshot, AwsError> {
            Err(AwsError::internal("the sync creates no job"))
        }

        async fn get_job(&self, _: &str, id: &str) -> Result<Option<JobSnapshot>, AwsError> {
            *self.gets.lock().unwrap() += 1;
            let jobs = self.jobs.lock().unwrap();
            Ok(jobs.iter().find(|job| job.id == id).cloned())
        }

        async fn cancel_job(
            &self,
            _: &str,
            _: &str,
        ) -> Result<crate::aws::CancelOutcome, AwsError> {
            Err(AwsError::internal("the sync cancels no job"))
        }

        async fn list_jobs(
            &self,
            _: &str,
            _: Option<&str>,
            status: Option<&str>,
            next_token: Option<String>,
        ) -> Result<crate::aws::JobPage, AwsError> {
            let status = status.unwrap_or_default();
            *self.pages.lock().unwrap().entry(status.into()).or_default() += 1;
            let start: usize = next_token.map_or(0, |token| token.parse().unwrap());
            let jobs = self.jobs.lock().unwrap();
            let listed: Vec<JobSnapshot> = jobs
                .iter()
                .filter(|job| job.status == status)
                .skip(start)
                .take(LIST_PAGE_SIZE as usize)
                .cloned()
                .collect();
            let end = start + listed.len();
            let more = jobs.iter().filter(|job| job.status == status).count() > end;
            Ok(crate::aws::JobPage {
                jobs: listed,
                next_token: more.then(|| end.to_string()),
            })
        }
    }

    /// Builds a sync that tracks `count` running jobs at 10 %, created one second apart.
    fn running_jobs(
        count: usize,
    ) -> (
        Arc<MemoryMediaConvert>,
        StatusSync,
        HashMap<String, TrackedJob>,
    ) {
        let mediaconvert = Arc::new(MemoryMediaConvert::default());
        let mut tracked = HashMap::new();
        for index in (0..count).rev() {
            let id = format!("job-{index:04}");
            let mut snapshot = job("PROGRESSING", Some(10));
            snapshot.id = id.clone();
            snapshot.created_at = Some(1_764_900_000 + index as i64);
            mediaconvert.jobs.lock().unwrap().push(snapshot.clone());
            let job = TrackedJob {
                object: ObjectRef::new(&id),
                created_at: snapshot.created_at,
                status: "PROGRESSING".into(),
            };
            tracked.insert(id, job);
        }
        let sync = StatusSync::new(mediaconvert.clone(), INTERVALS);
        // The jobs are tracked without `track`, which would start the queue's loop.
        let mut state = sync.state();
        for id in tracked.keys() {
            state.queue_of.insert(id.clone(), queue_key());
        }
        let queue = Queue {
            jobs: tracked.clone(),
            wake: Arc::new(Notify::new()),
        };
        state.queues.insert(queue_key(), queue);
        drop(state);
        (mediaconvert, sync, tracked)
    }

    fn status_of(sync: &StatusSync, id: &str) -> Option<(String, Option<i32>)> {
        let snapshot = sync.observation(id)?.snapshot?;
        Some((snapshot.status, snapshot.percent_complete))
    }

    #[test]
    fn tracked_job_kept_without_user_metadata() {
        let (_, sync, _) = running_jobs(1);
        let mut snapshot = job("PROGRESSING", Some(20));
        snapshot.id = "job-0000".into();
        snapshot
            .user_metadata
            .insert(format!("{RESERVED_METADATA_PREFIX}name"), "job-0000".into());

        let first = sync.observe("job-0000", Some(snapshot.clone()), now_ms());
        let again = sync.observe("job-0000", Some(snapshot), now_ms());

        assert!(matches!(first, Outcome::Stored(_)));
        assert_eq!(again, Outcome::Stale);
        let stored = sync.observation("job-0000").unwrap().snapshot.unwrap();
        assert!(stored.user_metadata.is_empty());
        assert_eq!(stored.percent_complete, Some(20));
    }

    #[test]
    fn status_rounds_start_above_eighty_running_jobs() {
        assert!(!status_rounds_pay(&running_jobs(80).2));
        assert!(status_rounds_pay(&running_jobs(81).2));
    }

    #[tokio::test]
    async fn status_round_finds_finished_jobs_without_progress_pages() {
        let (mediaconvert, sync, tracked) = running_jobs(200);
        mediaconvert.set("job-0150", "COMPLETE", 100);
        mediaconvert.set("job-0010", "ERROR", 40);
        mediaconvert.set("job-0100", "PROGRESSING", 60);

        let changes = sync
            .round(&queue_key(), tracked, Depth::Status)
            .await
            .unwrap();

        assert_eq!(
            changes,
            Changes {
                moved: 2,
                progressed: 0
            }
        );
        assert_eq!(mediaconvert.pages("PROGRESSING"), 0);
        assert_eq!(*mediaconvert.gets.lock().unwrap(), 0);
        let complete = status_of(&sync, "job-0150");
        assert_eq!(complete, Some(("COMPLETE".into(), Some(100))));
        assert_eq!(status_of(&sync, "job-0010").unwrap().0, "ERROR");
        assert_eq!(status_of(&sync, "job-0100"), None);
    }

    #[tokio::test]
    async fn full_round_reads_progress() {
        let (mediaconvert, sync, tracked) = running_jobs(200);
        mediaconvert.set("job-0100", "PROGRESSING", 60);

        let changes = sync
            .round(&queue_key(), tracked, Depth::Full)
            .await
            .unwrap();

        assert_eq!(changes.moved, 200);
        assert_eq!(mediaconvert.pages("PROGRESSING"), 10);
        let progress = status_of(&sync, "job-0100");
        assert_eq!(progress, Some(("PROGRESSING".into(), Some(60))));
    }

    #[tokio::test]
    async fn full_round_lists_finished_jobs() {
        let (mediaconvert, sync, mut tracked) = running_jobs(200);
        for index in 0..150 {
            mediaconvert.set(&format!("job-{index:04}"), "COMPLETE", 100);
        }
        // Ten of the finished jobs, spread over the COMPLETE listing, are not known yet.
        tracked.retain(|id, _| {
            let index: usize = id["job-".len()..].parse().unwrap();
            index < 150 && index.is_multiple_of(15)
        });

        let changes = sync
            .round(&queue_key(), tracked, Depth::Full)
            .await
            .unwrap();

        assert_eq!(changes.moved, 10);
        assert_eq!(*mediaconvert.gets.lock().unwrap(), 0);
        assert_eq!(mediaconvert.pages("COMPLETE"), 8);
    }

    #[tokio::test]
    async fn status_round_reads_jobs_that_left_submitted() {
        let (mediaconvert, sync, mut tracked) = running_jobs(200);
        for id in ["job-0199", "job-0198"] {
            tracked.get_mut(id).unwrap().status = "SUBMITTED".into();
        }
        mediaconvert.set("job-0198", "SUBMITTED", 0);

        let changes = sync
            .round(&queue_key(), tracked, Depth::Status)
            .await
            .unwrap();

        assert_eq!(changes.moved, 2);
        assert_eq!(mediaconvert.pages("PROGRESSING"), 1);
        let started = status_of(&sync, "job-0199");
        assert_eq!(started, Some(("PROGRESSING".into(), Some(10))));
        let queued = status_of(&sync, "job-0198");
        assert_eq!(queued, Some(("SUBMITTED".into(), Some(0))));
    }

    #[test]
    fn owner_comes_from_user_metadata() {
        let mut snapshot = job("SUBMITTED", None);
        snapshot.user_metadata.insert(
            format!("{RESERVED_METADATA_PREFIX}namespace"),
            "media".into(),
        );
        snapshot.user_metadata.insert(
            format!("{RESERVED_METADATA_PREFIX}name"),
            "episode-1".into(),
        );
        let owner = owner_of(&snapshot).expect("owner");
        assert_eq!(owner.name, "episode-1");
        assert_eq!(owner.namespace.as_deref(), Some("media"));
    }
}
