//! Outputs kept in Ray's object store: which tasks read which objects, and
//! when the last consumer is done so the driver can let Ray free them.

use std::collections::HashMap;

/// `object_ref` prefix of a payload held in Ray's object store.
pub const REF_PREFIX: &str = "ray:";

#[derive(Default)]
pub struct ReferenceBook {
    /// Object id -> consumers that have not read it yet.
    unread: HashMap<String, u32>,
    /// Task -> the objects it reads.
    readers: HashMap<u64, Vec<String>>,
}

impl ReferenceBook {
    /// A task's output `object` that `consumers` tasks will read.
    pub fn produced(&mut self, object: &str, consumers: u32) {
        self.unread.insert(object.to_owned(), consumers.max(1));
    }

    pub fn reads(&mut self, task_id: u64, objects: Vec<String>) {
        if !objects.is_empty() {
            self.readers.insert(task_id, objects);
        }
    }

    /// A task ended. After a success its inputs have one reader fewer;
    /// returns the objects nobody needs any more. After a failure the
    /// objects stay: a retry reads them again.
    pub fn finished(&mut self, task_id: u64, succeeded: bool) -> Vec<String> {
        let Some(objects) = self.readers.remove(&task_id) else { return Vec::new() };
        if !succeeded {
            return Vec::new();
        }
        let mut released = Vec::new();
        for object in objects {
            if let Some(left) = self.unread.get_mut(&object) {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    self.unread.remove(&object);
                    released.push(object);
                }
            }
        }
        released
    }

    /// Objects still held (for tests and health messages).
    pub fn held(&self) -> usize {
        self.unread.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_released_after_its_last_consumer_succeeds_not_after_a_failure() {
        let mut book = ReferenceBook::default();
        book.produced("abc", 2);
        book.reads(1, vec!["abc".into()]);
        book.reads(2, vec!["abc".into()]);
        assert!(book.finished(1, true).is_empty());
        book.reads(3, vec!["abc".into()]);
        assert!(book.finished(2, false).is_empty(), "a failed reader keeps it for its retry");
        assert_eq!(book.finished(3, true), ["abc"]);
        assert_eq!(book.held(), 0);
    }
}
