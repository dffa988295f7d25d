//! The way frames reach the current driver, and the tasks that wait while a
//! new driver starts, so a driver restart costs the tasks submitted during it
//! nothing: they run on the new driver instead of failing at once.

use crossbeam_channel::Sender;
use std::time::{Duration, Instant};

enum State {
    /// Frames go to the driver's writer thread.
    Up(Sender<Vec<u8>>),
    /// The driver stopped and a new one is starting; new tasks wait for it.
    Restarting { why: String, since: Instant, waiting: Vec<(u64, Vec<u8>)> },
    /// No driver, and new tasks fail at once: restarting has taken too long,
    /// or the instance is shut down.
    Down(String),
}

pub struct Link {
    state: State,
}

impl Link {
    /// Before the first driver is connected: tasks wait for it.
    pub fn starting() -> Self {
        Self { state: State::Restarting { why: "starting".into(), since: Instant::now(), waiting: Vec::new() } }
    }

    /// Sends a task's frame, or keeps it for the next driver; the error says
    /// why the task cannot run.
    pub fn submit(&mut self, task_id: u64, frame: Vec<u8>) -> Result<(), String> {
        match &mut self.state {
            State::Up(frames) => frames.send(frame).map_err(|_| "the Ray driver went away".to_owned()),
            State::Restarting { waiting, .. } => {
                waiting.push((task_id, frame));
                Ok(())
            }
            State::Down(why) => Err(why.clone()),
        }
    }

    /// Sends a control frame (cancel, release) to a running driver; a new
    /// driver does not know the old one's tasks and objects.
    pub fn control(&self, frame: Vec<u8>) {
        if let State::Up(frames) = &self.state {
            let _ = frames.send(frame);
        }
    }

    /// Takes a task out of the waiting list; false if it was not waiting.
    pub fn withdraw(&mut self, task_id: u64) -> bool {
        let State::Restarting { waiting, .. } = &mut self.state else { return false };
        let before = waiting.len();
        waiting.retain(|(id, _)| *id != task_id);
        waiting.len() != before
    }

    /// The driver stopped; a new one is being started.
    pub fn lost(&mut self, why: String) {
        let waiting = match std::mem::replace(&mut self.state, State::Down(String::new())) {
            State::Restarting { waiting, .. } => waiting,
            _ => Vec::new(),
        };
        self.state = State::Restarting { why, since: Instant::now(), waiting };
    }

    /// A new driver is up: the waiting tasks go to it first, in the order
    /// they were submitted. Returns how many there were.
    pub fn connected(&mut self, frames: Sender<Vec<u8>>) -> usize {
        let waiting = match std::mem::replace(&mut self.state, State::Up(frames.clone())) {
            State::Restarting { waiting, .. } => waiting,
            _ => Vec::new(),
        };
        let replayed = waiting.len();
        for (_, frame) in waiting {
            let _ = frames.send(frame);
        }
        replayed
    }

    /// After a failed restart: once the driver has been down for `patience`,
    /// new tasks fail at once and the waiting ones are returned, to fail.
    pub fn restart_failed(&mut self, error: &str, patience: Duration) -> Vec<u64> {
        let State::Restarting { why, since, waiting } = &mut self.state else { return Vec::new() };
        if since.elapsed() < patience {
            return Vec::new();
        }
        let message = format!("the Ray driver stopped ({why}) and could not be restarted for {patience:?}: {error}");
        let waiting = std::mem::take(waiting);
        self.state = State::Down(message);
        waiting.into_iter().map(|(id, _)| id).collect()
    }

    /// Shuts the link: new tasks are refused, waiting ones dropped (their
    /// sinks are the caller's to complete).
    pub fn close(&mut self) {
        self.state = State::Down("the ray backend is shut down".into());
    }

    /// Why the instance is not fully up, if it is not.
    pub fn problem(&self) -> Option<String> {
        match &self.state {
            State::Up(_) => None,
            State::Restarting { why, waiting, .. } => {
                Some(format!("the Ray driver stopped ({why}); restarting, {} tasks waiting for it", waiting.len()))
            }
            State::Down(why) => Some(why.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_submitted_while_the_driver_restarts_go_to_the_next_one_in_order() {
        let (old, old_frames) = crossbeam_channel::unbounded();
        let mut link = Link::starting();
        link.connected(old);
        link.submit(1, b"one".to_vec()).unwrap();
        link.lost("killed".into());
        link.submit(2, b"two".to_vec()).unwrap();
        link.submit(3, b"three".to_vec()).unwrap();
        link.control(b"cancel 1".to_vec());
        assert!(link.withdraw(3), "a waiting task can be cancelled");
        assert!(!link.withdraw(3));
        assert_eq!(link.problem().unwrap(), "the Ray driver stopped (killed); restarting, 1 tasks waiting for it");

        let (new, new_frames) = crossbeam_channel::unbounded();
        assert_eq!(link.connected(new), 1);
        link.submit(4, b"four".to_vec()).unwrap();
        assert_eq!(old_frames.try_iter().collect::<Vec<_>>(), [b"one".to_vec()]);
        assert_eq!(new_frames.try_iter().collect::<Vec<_>>(), [b"two".to_vec(), b"four".to_vec()]);
        assert_eq!(link.problem(), None);
    }

    #[test]
    fn after_restarting_for_too_long_waiting_tasks_are_returned_and_new_ones_refused() {
        let (frames, _receiver) = crossbeam_channel::unbounded();
        let mut link = Link::starting();
        link.connected(frames);
        link.lost("killed".into());
        link.submit(7, Vec::new()).unwrap();
        assert!(link.restart_failed("no python", Duration::from_secs(60)).is_empty(), "still patient");
        assert_eq!(link.restart_failed("no python", Duration::ZERO), [7]);
        let refused = link.submit(8, Vec::new()).unwrap_err();
        assert_eq!(refused, "the Ray driver stopped (killed) and could not be restarted for 0ns: no python");
        assert_eq!(link.problem().unwrap(), refused);
    }

    #[test]
    fn a_closed_link_refuses_new_tasks() {
        let (frames, _receiver) = crossbeam_channel::unbounded();
        let mut link = Link::starting();
        link.connected(frames);
        link.lost("killed".into());
        link.submit(5, Vec::new()).unwrap();
        link.close();
        assert!(!link.withdraw(5));
        assert_eq!(link.submit(6, Vec::new()).unwrap_err(), "the ray backend is shut down");
    }
}
