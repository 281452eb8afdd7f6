//! Undo actions registered as a test creates things, run in reverse order
//! when the registry is dropped, so a failing test cleans up too.

/// A stack of undo actions.
#[derive(Default)]
pub struct Cleanup {
    actions: Vec<(String, Box<dyn FnOnce()>)>,
}

impl std::fmt::Debug for Cleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.actions.iter().map(|(name, _)| name))
            .finish()
    }
}

impl Cleanup {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `action`, named for diagnostics.
    pub fn defer(&mut self, name: impl Into<String>, action: impl FnOnce() + 'static) {
        self.actions.push((name.into(), Box::new(action)));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        while let Some((_, action)) = self.actions.pop() {
            action();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn runs_in_reverse_order() {
        let log = Rc::new(RefCell::new(Vec::new()));
        {
            let mut cleanup = Cleanup::new();
            for i in 0..3 {
                let log = Rc::clone(&log);
                cleanup.defer(format!("step {i}"), move || log.borrow_mut().push(i));
            }
        }
        assert_eq!(*log.borrow(), vec![2, 1, 0]);
    }
}
