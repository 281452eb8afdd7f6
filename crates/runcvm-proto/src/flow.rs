//! Flow control per session. Many sessions share the one control channel
//! (the workload's output, exec sessions, port-forward connections), so a
//! side that blocked on one slow consumer would stall them all. Instead
//! each side may have at most [`WINDOW`] bytes of a session's data in
//! flight to the other, and the receiver grants more (`Credit`) as it hands
//! bytes on to their consumer: an exec client that stops reading holds up
//! its own process only, and what either side buffers for a session is
//! bounded by the window.
//!
//! The sender waits on its session's [`Window`]; the receiver queues a
//! session's data in an [`Outbox`], whose own thread writes it to the
//! consumer and reports what it wrote, for the credit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// How many bytes of one session's data may be in flight each way before
/// the receiver has passed them on: a few frames' worth, so a fast
/// consumer never waits for credit.
pub const WINDOW: u32 = 256 * 1024;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a sender may still send for one session.
#[derive(Debug)]
pub struct Window {
    state: Mutex<(u64, bool)>,
    changed: Condvar,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            state: Mutex::new((u64::from(WINDOW), false)),
            changed: Condvar::new(),
        }
    }
}

impl Window {
    /// Waits until there is credit, then takes up to `max` bytes of it;
    /// `None` once the window is closed (the session is over).
    pub fn take(&self, max: usize) -> Option<usize> {
        let mut state = lock(&self.state);
        loop {
            let (credit, closed) = *state;
            if closed {
                return None;
            }
            if credit > 0 {
                let taken = usize::try_from(credit).map_or(max, |credit| credit.min(max));
                state.0 -= u64::try_from(taken).unwrap_or(credit);
                return Some(taken);
            }
            state = self.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Adds `bytes` of credit: granted by the receiver, or taken and not
    /// used.
    pub fn give(&self, bytes: u64) {
        let mut state = lock(&self.state);
        state.0 = state.0.saturating_add(bytes);
        self.changed.notify_all();
    }

    /// Ends the window: whoever waits on it stops.
    pub fn close(&self) {
        lock(&self.state).1 = true;
        self.changed.notify_all();
    }
}

/// Every session's window on one side.
#[derive(Debug, Default)]
pub struct Windows {
    sessions: Mutex<HashMap<u32, Arc<Window>>>,
}

impl Windows {
    /// `session`'s window, full the first time it is asked for.
    pub fn get(&self, session: u32) -> Arc<Window> {
        Arc::clone(lock(&self.sessions).entry(session).or_default())
    }

    /// Credit from the receiver for `session`.
    pub fn grant(&self, session: u32, bytes: u32) {
        self.get(session).give(u64::from(bytes));
    }

    /// The session is over: its window closes and is forgotten.
    pub fn close(&self, session: u32) {
        if let Some(window) = lock(&self.sessions).remove(&session) {
            window.close();
        }
    }
}

/// The peer sent more than its window allowed for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the peer sent {queued} bytes of a session past its {WINDOW}-byte window")]
pub struct Overflow {
    pub queued: usize,
}

/// One item for a consumer, and the credit it is worth once handed on.
pub trait WindowBytes {
    /// Bytes of window the item took (data), or 0 (messages).
    fn window_bytes(&self) -> usize;

    /// Bytes the item holds in a queue, for its bound: its window bytes,
    /// unless it came outside every window (and so is worth no credit) but
    /// must still count against the bound.
    fn queued_bytes(&self) -> usize {
        self.window_bytes()
    }
}

struct Queue<T> {
    items: VecDeque<T>,
    queued: usize,
    finished: bool,
}

/// The receiving end of one session: items queued for a consumer that may
/// be slow, handed to it by a thread of the outbox's own, in order. After
/// each item, `credit` is told its window bytes, for the sender's window.
/// The queue holds at most twice [`WINDOW`] bytes of data (a sender that
/// keeps its window never comes near); past that, [`Outbox::push`] refuses.
pub struct Outbox<T> {
    queue: Arc<(Mutex<Queue<T>>, Condvar)>,
    writer: Option<JoinHandle<()>>,
}

impl<T> std::fmt::Debug for Outbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queued = lock(&self.queue.0).queued;
        f.debug_struct("Outbox").field("queued", &queued).finish()
    }
}

impl<T: WindowBytes + Send + 'static> Outbox<T> {
    /// Starts the outbox's thread, which hands each item to `deliver`
    /// (once `deliver` fails, the rest are dropped: the consumer is gone)
    /// and then tells `credit` its window bytes.
    pub fn new(
        name: &str,
        mut deliver: impl FnMut(T) -> std::io::Result<()> + Send + 'static,
        mut credit: impl FnMut(usize) + Send + 'static,
    ) -> Self {
        let queue = Arc::new((
            Mutex::new(Queue {
                items: VecDeque::<T>::new(),
                queued: 0,
                finished: false,
            }),
            Condvar::new(),
        ));
        let shared = Arc::clone(&queue);
        let writer = std::thread::Builder::new()
            .name(name.chars().take(15).collect())
            .spawn(move || {
                let mut broken = false;
                loop {
                    let item = {
                        let (mutex, ready) = &*shared;
                        let mut queue = lock(mutex);
                        loop {
                            if let Some(item) = queue.items.pop_front() {
                                break item;
                            }
                            if queue.finished {
                                return;
                            }
                            queue = ready.wait(queue).unwrap_or_else(PoisonError::into_inner);
                        }
                    };
                    let (held, bytes) = (item.queued_bytes(), item.window_bytes());
                    if !broken && deliver(item).is_err() {
                        broken = true;
                    }
                    lock(&shared.0).queued -= held;
                    if bytes > 0 {
                        credit(bytes);
                    }
                }
            })
            .ok();
        Self { queue, writer }
    }

    /// Queues `item`; never waits.
    pub fn push(&self, item: T) -> Result<(), Overflow> {
        let (mutex, ready) = &*self.queue;
        let mut queue = lock(mutex);
        let queued = queue.queued + item.queued_bytes();
        if queued > 2 * WINDOW as usize {
            return Err(Overflow { queued });
        }
        queue.queued = queued;
        queue.items.push_back(item);
        ready.notify_all();
        Ok(())
    }

    /// Hands on what is queued, then ends the thread; returns once it has.
    pub fn finish(mut self) {
        self.close();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }

    fn close(&self) {
        let (mutex, ready) = &*self.queue;
        lock(mutex).finished = true;
        ready.notify_all();
    }
}

impl<T> Drop for Outbox<T> {
    fn drop(&mut self) {
        let (mutex, ready) = &*self.queue;
        lock(mutex).finished = true;
        ready.notify_all();
    }
}

impl WindowBytes for Vec<u8> {
    fn window_bytes(&self) -> usize {
        self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_window_gives_what_it_has_and_waits_for_more() {
        let window = Arc::new(Window::default());
        assert_eq!(window.take(usize::MAX), Some(WINDOW as usize));
        let waiter = Arc::clone(&window);
        let (done, taken) = mpsc::channel();
        std::thread::spawn(move || done.send(waiter.take(100)).unwrap());
        assert!(
            taken.recv_timeout(Duration::from_millis(100)).is_err(),
            "took without credit"
        );
        window.give(40);
        assert_eq!(taken.recv_timeout(Duration::from_secs(5)).unwrap(), Some(40));
        window.give(500);
        assert_eq!(window.take(100), Some(100));
        window.close();
        assert_eq!(window.take(100), None, "a closed window gives nothing");
    }

    #[test]
    fn windows_are_per_session_and_credit_reaches_them() {
        let windows = Windows::default();
        assert_eq!(windows.get(1).take(usize::MAX), Some(WINDOW as usize));
        assert_eq!(windows.get(2).take(10), Some(10), "another session is untouched");
        windows.grant(1, 7);
        assert_eq!(windows.get(1).take(100), Some(7));
        let one = windows.get(1);
        windows.close(1);
        assert_eq!(one.take(1), None);
    }

    #[test]
    fn an_outbox_hands_on_in_order_grants_credit_and_bounds_what_it_holds() {
        let (delivered, received) = mpsc::channel::<Vec<u8>>();
        let (credited, credits) = mpsc::channel::<usize>();
        // A consumer that waits until told to go.
        let (go, gate) = mpsc::channel::<()>();
        let outbox = Outbox::new(
            "test",
            move |item: Vec<u8>| {
                gate.recv().map_err(std::io::Error::other)?;
                delivered.send(item).map_err(std::io::Error::other)
            },
            move |bytes| credited.send(bytes).unwrap(),
        );
        outbox.push(vec![1; 10]).unwrap();
        outbox.push(vec![2; 20]).unwrap();
        // Past twice the window, with the consumer stalled: refused.
        outbox.push(vec![0; 2 * WINDOW as usize - 30]).unwrap();
        assert_eq!(
            outbox.push(vec![9; 1]),
            Err(Overflow {
                queued: 2 * WINDOW as usize + 1
            })
        );
        assert!(credits.try_recv().is_err(), "credit before delivery");
        go.send(()).unwrap();
        assert_eq!(received.recv().unwrap(), vec![1; 10]);
        assert_eq!(credits.recv().unwrap(), 10);
        go.send(()).unwrap();
        go.send(()).unwrap();
        assert_eq!(received.recv().unwrap(), vec![2; 20]);
        assert_eq!(credits.recv().unwrap(), 20);
        outbox.finish();
        assert_eq!(received.recv().unwrap().len(), 2 * WINDOW as usize - 30);
    }

    #[test]
    fn a_consumer_that_is_gone_still_frees_the_window() {
        let (credited, credits) = mpsc::channel::<usize>();
        let outbox = Outbox::new(
            "gone",
            |_: Vec<u8>| Err(std::io::Error::other("gone")),
            move |bytes| credited.send(bytes).unwrap(),
        );
        outbox.push(vec![0; 5]).unwrap();
        outbox.push(vec![0; 6]).unwrap();
        outbox.finish();
        assert_eq!(credits.iter().collect::<Vec<_>>(), [5, 6]);
    }

    /// Bytes that came outside every window: bounded, worth no credit.
    struct Unwindowed(usize);

    impl WindowBytes for Unwindowed {
        fn window_bytes(&self) -> usize {
            0
        }

        fn queued_bytes(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn items_outside_the_window_count_against_the_bound_and_earn_no_credit() {
        let (credited, credits) = mpsc::channel::<usize>();
        let (go, gate) = mpsc::channel::<()>();
        let outbox = Outbox::new(
            "unwindowed",
            move |_: Unwindowed| {
                let _ = gate.recv();
                Ok(())
            },
            move |bytes| credited.send(bytes).unwrap(),
        );
        let limit = 2 * WINDOW as usize;
        outbox.push(Unwindowed(limit)).unwrap();
        assert!(outbox.push(Unwindowed(1)).is_err(), "past the bound");
        go.send(()).unwrap();
        drop(go);
        outbox.finish();
        assert!(credits.try_recv().is_err(), "no credit for them");
    }
}
