//! Reconciles of resources whose job the status sync or an event saw change.
//!
//! They bypass the controller's queue. While more resources are due than reconciles may
//! run, kube-runtime 5.0 keeps the due ones in a hash set (`Scheduler::pending`) and takes
//! them in the set's order, not in the order they fell due. During a burst of thousands of
//! new resources a finished job could then wait many minutes to be shown. Here changes are
//! reconciled in the order the sync saw them, with the same concurrency as the controller,
//! and a lock per resource keeps such a reconcile from running beside the controller's.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::Notify;

use crate::api::MediaConvertJob;
use crate::controller::Context;

/// Reconciles `changed` resources in arrival order, up to the configured concurrency at
/// once. A resource queued twice is reconciled once, because a reconcile reads the latest
/// state of its job when it starts. A resource not in `store` yet, or whose reconcile
/// failed, is sent to `retry`, the controller's queue, whose error policy then backs off.
pub async fn apply_changes(
    changed: impl Stream<Item = Resource>,
    store: Store<MediaConvertJob>,
    retry: mpsc::UnboundedSender<Resource>,
    context: Arc<Context>,
) {
    let queue = Arc::new(Queue::default());
    let receive = changed.for_each(|object| {
        queue.push(object);
        async {}
    });
    let workers = (0..context.settings.concurrency.max(1)).map(|_| async {
        loop {
            let object = queue.pop().await;
            let Some(job) = store.get(&object) else {
                let _ = retry.unbounded_send(object);
                continue;
            };
            let expires = job.spec.ttl_seconds_after_finished.is_some();
            let job_id = job.status.as_ref().and_then(|status| status.job_id.clone());
            match super::reconcile(job, context.clone()).await {
                Err(error) => {
                    tracing::debug!(%error, %object, "Reconcile of a changed job failed; queueing it for a retry");
                    let _ = retry.unbounded_send(object);
                }
                // The reconcile's requeue for `ttlSecondsAfterFinished` would be lost here,
                // so the controller reconciles the finished resource once more and schedules
                // its deletion.
                Ok(_) if expires && job_id.is_some_and(|id| context.sync.is_finished(&id)) => {
                    let _ = retry.unbounded_send(object);
                }
                Ok(_) => {}
            }
        }
    });
    futures::future::join(receive, futures::future::join_all(workers)).await;
}

/// Resources waiting for a reconcile, oldest first, each at most once.
#[derive(Default)]
struct Queue {
    waiting: Mutex<Waiting>,
    pushed: Notify,
}

#[derive(Default)]
struct Waiting {
    order: VecDeque<Resource>,
    queued: HashSet<Resource>,
}

type Resource = ObjectRef<MediaConvertJob>;

impl Queue {
    fn push(&self, object: Resource) {
        let mut waiting = self.lock();
        if waiting.queued.insert(object.clone()) {
            waiting.order.push_back(object);
            self.pushed.notify_one();
        }
    }

    /// Takes the oldest resource, waiting for one when none is queued.
    async fn pop(&self) -> Resource {
        loop {
            {
                let mut waiting = self.lock();
                if let Some(object) = waiting.order.pop_front() {
                    waiting.queued.remove(&object);
                    return object;
                }
            }
            self.pushed.notified().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Locks per resource, so that two reconciles of one resource never run at once.
#[derive(Default)]
pub struct ObjectLocks {
    /// Locks of the resources being reconciled or waited for. An entry goes away with its
    /// last user.
    locks: Mutex<HashMap<Resource, Arc<tokio::sync::Mutex<()>>>>,
}

impl ObjectLocks {
    /// Waits until no other reconcile of `object` runs, and holds it off until the guard
    /// is dropped.
    pub async fn lock(&self, object: Resource) -> ObjectGuard<'_> {
        let lock = self.entries().entry(object.clone()).or_default().clone();
        let guard = lock.clone().lock_owned().await;
        ObjectGuard {
            locks: self,
            object,
            lock,
            guard: Some(guard),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Resource, Arc<tokio::sync::Mutex<()>>>> {
        self.locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Number of resources locked or waited for.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

/// Held reconcile of one resource.
pub struct ObjectGuard<'a> {
    locks: &'a ObjectLocks,
    object: Resource,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for ObjectGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut entries = self.locks.entries();
        // The map and this guard hold the lock; any further holder waits for it.
        if Arc::strong_count(&self.lock) == 2 {
            entries.remove(&self.object);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn object(name: &str) -> Resource {
        ObjectRef::new(name).within("media")
    }

    #[tokio::test]
    async fn queue_keeps_order_and_drops_repeats() {
        let queue = Queue::default();
        for name in ["episode-2", "episode-1", "episode-2", "episode-3"] {
            queue.push(object(name));
        }
        let mut popped = Vec::new();
        for _ in 0..3 {
            popped.push(queue.pop().await.name);
        }
        assert_eq!(popped, ["episode-2", "episode-1", "episode-3"]);
        assert!(queue.lock().order.is_empty());
    }

    #[tokio::test]
    async fn resource_queued_again_after_pop() {
        let queue = Queue::default();
        queue.push(object("episode-1"));
        queue.pop().await;
        queue.push(object("episode-1"));
        let again = tokio::time::timeout(Duration::from_secs(5), queue.pop()).await;
        assert_eq!(again.expect("nothing queued").name, "episode-1");
    }

    #[tokio::test]
    async fn second_reconcile_waits_for_first() {
        let locks = Arc::new(ObjectLocks::default());
        let first = locks.lock(object("episode-1")).await;
        let waiting = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _second = locks.lock(object("episode-1")).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());

        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the second lock was not granted after the first was dropped")
            .expect("task failed");
        assert_eq!(locks.len(), 0);
    }

    #[tokio::test]
    async fn other_resources_do_not_wait() {
        let locks = ObjectLocks::default();
        let _first = locks.lock(object("episode-1")).await;
        let other = tokio::time::timeout(Duration::from_secs(5), locks.lock(object("episode-2")));
        let _other = other
            .await
            .expect("the lock of another resource was not granted");
        assert_eq!(locks.len(), 2);
    }
}
