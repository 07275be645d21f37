//! One subscriber's bounded queue. The supervisor pushes a batch of messages
//! under one lock and wakes the subscription once; the subscription takes
//! everything queued under one lock and then reads its own copy. The last
//! subscriber is usually handed the batch itself: per message that is one move,
//! out of the batch at the receiving end, where a general-purpose channel pays
//! several atomic operations and a wake-up.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::message::Message;
use crate::source::{SlowSubscriber, SubscribeOptions};

/// The subscription is gone: nothing more can be delivered to it.
#[derive(Debug)]
pub(crate) struct Gone;

#[derive(Debug)]
struct Queue {
    /// Delivered batches in order, none empty: whole batches handed over, or
    /// the part of a batch that was delivered.
    batches: VecDeque<Vec<Message>>,
    /// The messages in `batches`.
    len: usize,
    /// Messages dropped for a lossy subscriber and not reported yet.
    missed: u64,
    receiver_waker: Option<Waker>,
    sender_waker: Option<Waker>,
    sender_alive: bool,
    receiver_alive: bool,
}

#[derive(Debug)]
struct Mailbox {
    capacity: usize,
    queue: Mutex<Queue>,
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A mailbox for one subscriber with these options.
pub(crate) fn mailbox(options: SubscribeOptions) -> (Sender, Receiver) {
    let mailbox = Arc::new(Mailbox {
        capacity: options.capacity.max(1),
        queue: Mutex::new(Queue {
            batches: VecDeque::new(),
            len: 0,
            missed: 0,
            receiver_waker: None,
            sender_waker: None,
            sender_alive: true,
            receiver_alive: true,
        }),
    });
    (
        Sender {
            mailbox: Arc::clone(&mailbox),
            lossy: matches!(options.slow, SlowSubscriber::Skip),
            comments: options.comments,
        },
        Receiver {
            mailbox,
            reading: Vec::new().into_iter(),
            taken: VecDeque::new(),
        },
    )
}

/// The supervisor's end: one subscriber, as the supervisor sees it.
#[derive(Debug)]
pub(crate) struct Sender {
    mailbox: Arc<Mailbox>,
    lossy: bool,
    comments: bool,
}

impl Sender {
    /// Whether this subscriber receives comments.
    pub(crate) fn wants_comments(&self) -> bool {
        self.comments
    }

    /// Delivers `batch[*next..]` while there is room, advancing `*next` past
    /// each message delivered, counted as missed, or not wanted (comments), and
    /// wakes the subscription once. Stops early only for a full lossless
    /// subscriber: a lossy one counts what does not fit as missed, and the
    /// count is queued ahead of the next message that fits.
    ///
    /// With `take`, messages are moved out of `batch`: the whole batch, which
    /// is left empty, when all of it fits and is wanted; otherwise each one,
    /// leaving a cheap placeholder. Without, they are cloned.
    pub(crate) fn push(
        &self,
        batch: &mut Vec<Message>,
        next: &mut usize,
        take: bool,
    ) -> Result<(), Gone> {
        let mut queue = self.mailbox.lock();
        if !queue.receiver_alive {
            return Err(Gone);
        }
        let before = queue.len;
        let mut room = self.mailbox.capacity.saturating_sub(queue.len);
        if self.lossy && queue.missed > 0 && room > 0 && *next < batch.len() {
            let count = std::mem::take(&mut queue.missed);
            queue.batches.push_back(vec![Message::Missed { count }]);
            queue.len += 1;
            room -= 1;
        }
        let rest = batch.len() - *next;
        if take && *next == 0 && rest > 0 && rest <= room && batch.iter().all(|m| self.wants(m)) {
            // The common case: the batch itself, not a message moved.
            *next = rest;
            queue.len += rest;
            queue.batches.push_back(std::mem::take(batch));
        } else {
            let mut delivered = Vec::with_capacity(rest.min(room));
            for message in &mut batch[*next..] {
                if !self.wants(message) {
                    // Not wanted: passed over, neither delivered nor missed.
                } else if room > 0 {
                    room -= 1;
                    delivered.push(if take {
                        std::mem::replace(message, Message::Connecting { attempt: 0 })
                    } else {
                        message.clone()
                    });
                } else if self.lossy {
                    queue.missed += 1;
                } else {
                    break;
                }
                *next += 1;
            }
            if !delivered.is_empty() {
                queue.len += delivered.len();
                queue.batches.push_back(delivered);
            }
        }
        let waker = if queue.len > before {
            queue.receiver_waker.take()
        } else {
            None
        };
        drop(queue);
        wake(waker);
        Ok(())
    }

    /// Whether `message` is for this subscriber: comments only if it asked.
    fn wants(&self, message: &Message) -> bool {
        self.comments || !matches!(message, Message::Comment(_))
    }

    /// Ready when the queue has room again, or with `Gone` when the
    /// subscription was dropped.
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        let mut queue = self.mailbox.lock();
        if !queue.receiver_alive {
            return Poll::Ready(Err(Gone));
        }
        if queue.len < self.mailbox.capacity {
            return Poll::Ready(Ok(()));
        }
        register(&mut queue.sender_waker, cx);
        Poll::Pending
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut queue = self.mailbox.lock();
        queue.sender_alive = false;
        let waker = queue.receiver_waker.take();
        drop(queue);
        wake(waker);
    }
}

/// The subscription's end.
#[derive(Debug)]
pub(crate) struct Receiver {
    mailbox: Arc<Mailbox>,
    /// The batch being read; batches already taken from the queue follow in
    /// `taken`. Both are read without locking.
    reading: std::vec::IntoIter<Message>,
    taken: VecDeque<Vec<Message>>,
}

impl Receiver {
    /// The next message; `None` once the sender is gone and everything is read.
    /// Messages counted as missed are reported after those queued before them.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        if self.reading.len() == 0 {
            let Some(batch) = self.take_batch(cx) else {
                return Poll::Pending;
            };
            match batch {
                Taken::Batch(batch) => self.reading = batch.into_iter(),
                Taken::Missed(count) => return Poll::Ready(Some(Message::Missed { count })),
                Taken::Closed => return Poll::Ready(None),
            }
        }
        let message = self.reading.next();
        if self.reading.len() == 0 {
            // Read through: release the batch now, so an idle subscription
            // holds no slots.
            self.reading = Vec::new().into_iter();
        }
        Poll::Ready(message)
    }

    /// The next batch to read: from those taken, or else everything queued,
    /// taken under one lock. `None` when there is nothing yet.
    fn take_batch(&mut self, cx: &Context<'_>) -> Option<Taken> {
        if self.taken.is_empty() {
            let mut queue = self.mailbox.lock();
            if queue.batches.is_empty() {
                if queue.missed > 0 {
                    return Some(Taken::Missed(std::mem::take(&mut queue.missed)));
                }
                if !queue.sender_alive {
                    return Some(Taken::Closed);
                }
                register(&mut queue.receiver_waker, cx);
                return None;
            }
            // Take the whole queue at once; the sender starts a new one.
            std::mem::swap(&mut queue.batches, &mut self.taken);
            queue.len = 0;
            let waker = queue.sender_waker.take();
            drop(queue);
            wake(waker);
        }
        let batch = self.taken.pop_front().map(Taken::Batch);
        if self.taken.is_empty() {
            self.taken = VecDeque::new();
        }
        batch
    }
}

/// What the receiver found to read.
enum Taken {
    Batch(Vec<Message>),
    Missed(u64),
    Closed,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut queue = self.mailbox.lock();
        queue.receiver_alive = false;
        let messages = std::mem::take(&mut queue.batches);
        let waker = queue.sender_waker.take();
        drop(queue);
        // Dropped outside the lock: a message's drop runs arbitrary code.
        drop(messages);
        wake(waker);
    }
}

/// Wakes the other end, if it waits. Called with the lock released, so the
/// woken task never finds it held.
fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl CountingWaker {
        fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn options(capacity: usize, slow: SlowSubscriber) -> SubscribeOptions {
        SubscribeOptions::default()
            .capacity(capacity)
            .slow_subscriber(slow)
    }

    fn numbered(range: std::ops::Range<u64>) -> Vec<Message> {
        range
            .map(|attempt| Message::Connecting { attempt })
            .collect()
    }

    /// Pushes the whole batch once; returns how far it got.
    fn push(sender: &Sender, batch: &mut Vec<Message>, take: bool) -> usize {
        let mut next = 0;
        sender.push(batch, &mut next, take).unwrap();
        next
    }

    /// Attempt numbers for `Connecting`, 1000 + count for `Missed`, 0 for comments.
    fn recv(receiver: &mut Receiver, waker: &Arc<CountingWaker>) -> Poll<Option<u64>> {
        let waker = Waker::from(Arc::clone(waker));
        receiver
            .poll_recv(&mut Context::from_waker(&waker))
            .map(|message| match message? {
                Message::Connecting { attempt } => Some(attempt),
                Message::Missed { count } => Some(1000 + count),
                _ => Some(0),
            })
    }

    fn drain(receiver: &mut Receiver, waker: &Arc<CountingWaker>) -> Vec<u64> {
        std::iter::from_fn(|| match recv(receiver, waker) {
            Poll::Ready(Some(n)) => Some(n),
            _ => None,
        })
        .collect()
    }

    #[test]
    fn lossless_push_stops_at_capacity_and_resumes_after_a_read() {
        let (sender, mut receiver) = mailbox(options(2, SlowSubscriber::Wait));
        let waker = Arc::new(CountingWaker::default());
        let mut batch = numbered(0..5);
        let mut next = 0;
        sender.push(&mut batch, &mut next, true).unwrap();
        assert_eq!(next, 2, "two fit");
        let sender_waker = Arc::new(CountingWaker::default());
        let cx_waker = Waker::from(Arc::clone(&sender_waker));
        let mut cx = Context::from_waker(&cx_waker);
        assert!(sender.poll_room(&mut cx).is_pending());
        assert_eq!(recv(&mut receiver, &waker), Poll::Ready(Some(0)));
        assert_eq!(sender_waker.count(), 1, "room wakes the sender");
        assert!(matches!(sender.poll_room(&mut cx), Poll::Ready(Ok(()))));
        sender.push(&mut batch, &mut next, true).unwrap();
        assert_eq!(next, 4);
        // The receiver took 0 and 1 at once; 2 and 3 fill the queue again.
        assert_eq!(recv(&mut receiver, &waker), Poll::Ready(Some(1)));
        sender.push(&mut batch, &mut next, true).unwrap();
        assert_eq!(next, 4, "still full");
        assert_eq!(recv(&mut receiver, &waker), Poll::Ready(Some(2)));
        sender.push(&mut batch, &mut next, true).unwrap();
        assert_eq!(next, 5);
        drop(sender);
        assert_eq!(drain(&mut receiver, &waker), [3, 4]);
        assert_eq!(recv(&mut receiver, &waker), Poll::Ready(None));
    }

    #[test]
    fn clones_leave_the_batch_whole_and_a_take_hands_it_over() {
        let (sender, mut receiver) = mailbox(options(8, SlowSubscriber::Wait));
        let waker = Arc::new(CountingWaker::default());
        let mut batch = numbered(1..3);
        push(&sender, &mut batch, false);
        assert_eq!(drain(&mut receiver, &waker), [1, 2]);
        assert!(matches!(batch[1], Message::Connecting { attempt: 2 }));
        let allocation = batch.as_ptr();
        push(&sender, &mut batch, true);
        assert_eq!(batch.capacity(), 0, "handed over");
        assert_eq!(receiver.mailbox.lock().batches[0].as_ptr(), allocation);
        assert_eq!(drain(&mut receiver, &waker), [1, 2]);
    }

    #[test]
    fn a_take_of_part_of_a_batch_leaves_placeholders() {
        let (sender, mut receiver) = mailbox(options(1, SlowSubscriber::Wait));
        let waker = Arc::new(CountingWaker::default());
        let mut batch = numbered(1..3);
        assert_eq!(push(&sender, &mut batch, true), 1, "one fits");
        assert!(matches!(batch[0], Message::Connecting { attempt: 0 }));
        assert!(matches!(batch[1], Message::Connecting { attempt: 2 }));
        assert_eq!(drain(&mut receiver, &waker), [1]);
    }

    #[test]
    fn comments_reach_only_subscribers_that_asked() {
        let mut batch = vec![
            Message::Connecting { attempt: 1 },
            Message::Comment("keep-alive".into()),
            Message::Connecting { attempt: 2 },
        ];
        let waker = Arc::new(CountingWaker::default());
        let (without, mut without_rx) = mailbox(options(8, SlowSubscriber::Wait));
        let (with, mut with_rx) = mailbox(options(8, SlowSubscriber::Wait).comments(true));
        assert_eq!(push(&without, &mut batch, false), 3);
        assert_eq!(push(&with, &mut batch, true), 3);
        assert_eq!(drain(&mut without_rx, &waker), [1, 2]);
        assert_eq!(drain(&mut with_rx, &waker), [1, 0, 2]);
    }

    #[test]
    fn lossy_push_counts_what_does_not_fit_and_reports_it_in_order() {
        let (sender, mut receiver) = mailbox(options(2, SlowSubscriber::Skip));
        let waker = Arc::new(CountingWaker::default());
        assert_eq!(push(&sender, &mut numbered(0..5), true), 5, "never stops");
        assert_eq!(drain(&mut receiver, &waker), [0, 1, 1003]);
        // A count left while messages are queued goes ahead of the next one that fits.
        push(&sender, &mut numbered(5..8), true);
        assert_eq!(recv(&mut receiver, &waker), Poll::Ready(Some(5)));
        push(&sender, &mut numbered(8..9), true);
        assert_eq!(drain(&mut receiver, &waker), [6, 1001, 8]);
        assert_eq!(recv(&mut receiver, &waker), Poll::Pending);
    }

    #[test]
    fn one_wake_per_batch_and_none_without_a_waiting_receiver() {
        let (sender, mut receiver) = mailbox(options(64, SlowSubscriber::Wait));
        let waker = Arc::new(CountingWaker::default());
        push(&sender, &mut numbered(0..10), true);
        assert_eq!(waker.count(), 0);
        assert_eq!(drain(&mut receiver, &waker), (0..10).collect::<Vec<_>>());
        assert_eq!(recv(&mut receiver, &waker), Poll::Pending);
        push(&sender, &mut numbered(10..20), true);
        assert_eq!(waker.count(), 1);
        drop(sender);
        assert_eq!(waker.count(), 1, "already woken");
    }

    #[test]
    fn a_read_through_receiver_holds_no_buffer() {
        let (sender, mut receiver) = mailbox(options(1024, SlowSubscriber::Wait));
        let waker = Arc::new(CountingWaker::default());
        for start in (0..500).step_by(100) {
            push(&sender, &mut numbered(start..start + 100), true);
        }
        assert_eq!(recv(&mut receiver, &waker), Poll::Ready(Some(0)));
        assert_eq!(receiver.reading.len(), 99);
        assert_eq!(receiver.taken.len(), 4);
        assert_eq!(drain(&mut receiver, &waker).len(), 499);
        // An `IntoIter` of `Vec::new()` points at a dangling address: no allocation.
        let unallocated = std::ptr::NonNull::<Message>::dangling()
            .as_ptr()
            .cast_const();
        assert_eq!(receiver.reading.as_slice().as_ptr(), unallocated);
        assert_eq!(receiver.taken.capacity(), 0);
        assert_eq!(receiver.mailbox.lock().batches.capacity(), 0);
    }

    #[test]
    fn a_dropped_receiver_fails_the_sender_and_wakes_it() {
        let (sender, receiver) = mailbox(options(1, SlowSubscriber::Wait));
        push(&sender, &mut numbered(0..1), true);
        let sender_waker = Arc::new(CountingWaker::default());
        let cx_waker = Waker::from(Arc::clone(&sender_waker));
        let mut cx = Context::from_waker(&cx_waker);
        assert!(sender.poll_room(&mut cx).is_pending());
        drop(receiver);
        assert_eq!(sender_waker.count(), 1);
        assert!(matches!(sender.poll_room(&mut cx), Poll::Ready(Err(Gone))));
        assert!(sender.push(&mut numbered(1..2), &mut 0, true).is_err());
    }
}
