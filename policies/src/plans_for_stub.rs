//! TEMPORARY: a stand-in for `Policy::plans_for` until the plan loader lands on
//! branch `plan-lang`; drop this commit when it merges.

use crate::Policy;
use crate::facts::Facts;
use crate::plan::{Event, Selection};

impl Policy {
    /// Stand-in: selects no plan. The real one resolves the plans bound to `event`
    /// for the member `facts` describe.
    pub fn plans_for(&self, event: &Event, facts: &Facts) -> Selection {
        Selection {
            member: facts.member.clone(),
            runs: Vec::new(),
            notes: vec![format!(
                "{event:?}: plan selection is a stub until the plan loader lands"
            )],
        }
    }
}
