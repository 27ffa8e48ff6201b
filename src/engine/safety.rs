//! Lock safety extensions: `check`/`scheck` (is this token or fence a current holder's?).
//!
//! Nothing here changes what a 1.x request sees: these are new commands, answered from the same
//! state the 1.x commands keep.

use super::{ClientId, Engine, Outbox, Outcome};
use crate::clock::Millis;
use crate::protocol::Response;
use crate::protocol::request::{Check, CheckTarget};

impl Engine {
    /// `check` / `scheck`: `ok <fence> <remaining_ms>` if the token or fence belongs to a holder
    /// of the key whose lease has not passed, else `stale`. Looks only; changes nothing (not even
    /// the key's last activity), so asking cannot keep a resource alive.
    pub(super) fn check(
        &mut self,
        now: Millis,
        client: ClientId,
        cmd: Check<'_>,
        out: &mut impl Outbox,
    ) -> Outcome {
        let response = match self.current_holder(now, cmd) {
            Some((fence, expires)) => Response::Checked {
                fence,
                remaining_ms: expires.since(now),
            },
            None => Response::Stale,
        };
        out.reply(client, response);
        Outcome::Answered
    }

    /// The fence and expiry of the holder `cmd` names, if it holds `cmd`'s key and its lease has
    /// not passed. A holder whose lease passed but whose timer has not been handled yet is
    /// already stale.
    fn current_holder(&self, now: Millis, cmd: Check<'_>) -> Option<(u64, Millis)> {
        let Check { ns, key, target } = cmd;
        let fence = match target {
            CheckTarget::Token(token) => token.fence,
            CheckTarget::Fence(fence) => fence,
        };
        let leases = &self.leases;
        let lease = self
            .by_fence
            .find(fence, |slot| leases[slot as usize].token.fence)?;
        let l = &leases[lease as usize];
        let resource = &self.keys.resources[l.resource as usize];
        let same_token = match target {
            CheckTarget::Token(token) => l.token == token,
            CheckTarget::Fence(_) => true,
        };
        let expires = self.expiry(lease);
        (same_token && resource.ns() == ns && *resource.key == *key && expires > now)
            .then_some((fence, expires))
    }
}
