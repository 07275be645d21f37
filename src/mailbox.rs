//! One subscriber's bounded queue. The supervisor pushes a batch of messages
//! under one lock and wakes the subscription once; the subscription takes
//! everything queued under one lock and then reads its own copy. Per message
//! that is a move, where a general-purpose channel pays several atomic
//! operations and a wake-up.

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
    messages: VecDeque<Message>,
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
            messages: VecDeque::new(),
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
    /// With `take`, messages are moved out of `batch` (a cheap placeholder is
    /// left behind); otherwise they are cloned.
    pub(crate) fn push(
        &self,
        batch: &mut [Message],
        next: &mut usize,
        take: bool,
    ) -> Result<(), Gone> {
        let mut queue = self.mailbox.lock();
        if !queue.receiver_alive {
            return Err(Gone);
        }
        let before = queue.messages.len();
        let mut room = self.mailbox.capacity.saturating_sub(before);
        if self.lossy && queue.missed > 0 && room > 0 && *next < batch.len() {
            let count = std::mem::take(&mut queue.missed);
            queue.messages.push_back(Message::Missed { count });
            room -= 1;
        }
        // One allocation for the batch, rather than doubling up to it.
        queue.messages.reserve((batch.len() - *next).min(room));
        for message in &mut batch[*next..] {
            if !self.comments && matches!(message, Message::Comment(_)) {
                // Not wanted: passed over, neither delivered nor missed.
            } else if room > 0 {
                room -= 1;
                queue.messages.push_back(if take {
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
        let waker = if queue.messages.len() > before {
            queue.receiver_waker.take()
        } else {
            None
        };
        drop(queue);
        wake(waker);
        Ok(())
    }

    /// Ready when the queue has room again, or with `Gone` when the
    /// subscription was dropped.
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        let mut queue = self.mailbox.lock();
        if !queue.receiver_alive {
            return Poll::Ready(Err(Gone));
        }
        if queue.messages.len() < self.mailbox.capacity {
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
    /// Messages already taken from the queue, in order: read without locking.
    taken: VecDeque<Message>,
}

impl Receiver {
    /// The next message; `None` once the sender is gone and everything is read.
    /// Messages counted as missed are reported after those queued before them.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        if self.taken.is_empty() {
            let mut queue = self.mailbox.lock();
            if queue.messages.is_empty() {
                if queue.missed > 0 {
                    let count = std::mem::take(&mut queue.missed);
                    return Poll::Ready(Some(Message::Missed { count }));
                }
                if !queue.sender_alive {
                    return Poll::Ready(None);
                }
                register(&mut queue.receiver_waker, cx);
                return Poll::Pending;
            }
            // Take the whole queue at once; the sender starts a new one.
            std::mem::swap(&mut queue.messages, &mut self.taken);
            let waker = queue.sender_waker.take();
            drop(queue);
            wake(waker);
        }
        let message = self.taken.pop_front();
        if self.taken.is_empty() {
            // Read through: release the buffer, so an idle subscription holds no
            // slots. The next batch reserves its size in one allocation.
            self.taken = VecDeque::new();
        }
        Poll::Ready(message)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut queue = self.mailbox.lock();
        queue.receiver_alive = false;
        let messages = std::mem::take(&mut queue.messages);
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
    fn push(sender: &Sender, batch: &mut [Message], take: bool) -> usize {
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
    fn clones_leave_the_batch_whole_and_takes_leave_placeholders() {
        let (sender, mut receiver) = mailbox(options(8, SlowSubscriber::Wait));
        let waker = Arc::new(CountingWaker::default());
        let mut batch = numbered(1..3);
        push(&sender, &mut batch, false);
        assert_eq!(drain(&mut receiver, &waker), [1, 2]);
        assert!(matches!(batch[1], Message::Connecting { attempt: 2 }));
        push(&sender, &mut batch, true);
        assert_eq!(drain(&mut receiver, &waker), [1, 2]);
        assert!(matches!(batch[1], Message::Connecting { attempt: 0 }));
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
        push(&sender, &mut numbered(0..500), true);
        assert_eq!(recv(&mut receiver, &waker), Poll::Ready(Some(0)));
        assert!(receiver.taken.capacity() >= 499);
        assert_eq!(drain(&mut receiver, &waker).len(), 499);
        assert_eq!(receiver.taken.capacity(), 0);
        assert_eq!(receiver.mailbox.lock().messages.capacity(), 0);
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
