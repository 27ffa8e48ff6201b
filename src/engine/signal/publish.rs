//! Publishing a signal: the wildcard scan, then the copies offered in the order of spec §13.4, cut into
//! units so the event loop can spread one publish over several turns.

use std::mem;

use super::wildcards::ScanCursor;
use super::{ClientEntry, DeliverySink, PatternKind, QueueGroup, SignalIndex};
use crate::slots::Slots;

/// A publish in progress: the channel, the wildcard patterns found so far and the next copy to offer.
#[derive(Debug, Default)]
pub(super) struct Publishing {
    pub(super) channel: Vec<u8>,
    /// The literal pattern spelled like the channel, if subscribed.
    pub(super) literal: Option<u32>,
    /// Matching wildcard patterns.
    pub(super) matched: Vec<u32>,
    pub(super) step: Step,
    /// Copies delivered so far (the `ok <count>` of §13.5).
    pub(super) count: u64,
}

/// The stages of a publish, in order: the wildcard scan, then the four delivery steps of §13.4
/// (`Offer::stage` 0 to 3), each walking its patterns (`pattern`) and their members or groups
/// (`item`).
#[derive(Clone, Copy, Debug)]
pub(super) enum Step {
    Scan(ScanCursor),
    Offer {
        stage: u8,
        pattern: usize,
        item: usize,
    },
}

impl Default for Step {
    fn default() -> Step {
        Step::Scan(ScanCursor::default())
    }
}

impl SignalIndex {
    /// Starts publishing a signal on `channel` (a valid key without `*` or `>`): the next calls of
    /// [`SignalIndex::continue_publish`] offer its copies. Until the publish completes the index must not
    /// change.
    pub fn begin_publish(&mut self, channel: &[u8]) {
        debug_assert!(!self.is_publishing(), "a publish is already in progress");
        self.epoch += 1;
        let mut publishing = mem::take(&mut self.spare);
        publishing.channel.clear();
        publishing.channel.extend_from_slice(channel);
        publishing.matched.clear();
        publishing.count = 0;
        // Only a literal entry can be spelled like a channel; the kind check keeps a channel that breaks
        // the no-wildcard rule from reaching wildcard subscribers twice.
        publishing.literal = self
            .pattern_slots
            .get(channel)
            .copied()
            .filter(|&slot| self.patterns[slot as usize].kind == PatternKind::Literal);
        publishing.step = match self.wildcards.cached(channel) {
            Some(matched) => {
                publishing.matched.extend_from_slice(matched);
                Step::Offer {
                    stage: 0,
                    pattern: 0,
                    item: 0,
                }
            }
            None => Step::Scan(ScanCursor::default()),
        };
        self.publishing = Some(publishing);
    }

    /// Continues the publish in progress, offering each copy in the order of spec §13.4, until it is
    /// complete or `units` runs out (a unit per pattern looked at and per member offered, plus
    /// `copy_cost` per copy delivered). Returns the delivery count of §13.5 once complete.
    ///
    /// Order: (1) literal non-grouped subscribers, (2) literal queue groups, (3) wildcard non-grouped
    /// subscribers, (4) wildcard queue groups. A client gets at most one copy through (1) and (3) together,
    /// plus one per group that picks it. A non-grouped subscriber without room is evicted and not counted. A
    /// group tries the member at `turn mod size` first (the turn advances once per signal), then the
    /// following members in order, wrapping; the first with room gets the copy, and if none has room the
    /// member tried first is evicted. A client evicted earlier in this publish is skipped from then on.
    pub fn continue_publish(
        &mut self,
        units: &mut u64,
        copy_cost: u64,
        sink: &mut impl DeliverySink,
    ) -> Option<u64> {
        let mut publishing = self.publishing.take()?;
        let mut ledger = Ledger {
            units: *units,
            copy_cost,
            count: publishing.count,
        };
        let done = self.advance_publish(&mut publishing, &mut ledger, sink);
        *units = ledger.units;
        publishing.count = ledger.count;
        if !done {
            self.publishing = Some(publishing);
            return None;
        }
        let count = publishing.count;
        self.spare = publishing;
        Some(count)
    }

    /// Whether a publish is in progress.
    pub fn is_publishing(&self) -> bool {
        self.publishing.is_some()
    }

    /// Publishes a signal on `channel` in one go and returns its delivery count: what
    /// [`SignalIndex::begin_publish`] and [`SignalIndex::continue_publish`] do with unlimited units.
    pub fn publish(&mut self, channel: &[u8], sink: &mut impl DeliverySink) -> u64 {
        self.begin_publish(channel);
        let mut unlimited = u64::MAX;
        self.continue_publish(&mut unlimited, 0, sink)
            .expect("an unlimited publish completes")
    }

    /// Runs `publishing` on until it completes (`true`) or the ledger's units run out (`false`).
    fn advance_publish(
        &mut self,
        publishing: &mut Publishing,
        ledger: &mut Ledger,
        sink: &mut impl DeliverySink,
    ) -> bool {
        if let Step::Scan(mut cursor) = publishing.step {
            let patterns = &self.patterns;
            let complete = self.wildcards.scan(
                &publishing.channel,
                self.dollar_rule,
                &mut cursor,
                |slot| &patterns[slot as usize].pattern,
                &mut publishing.matched,
                &mut ledger.units,
            );
            if !complete {
                publishing.step = Step::Scan(cursor);
                return false;
            }
            self.wildcards
                .remember(&publishing.channel, &publishing.matched);
            publishing.step = Step::Offer {
                stage: 0,
                pattern: 0,
                item: 0,
            };
        }
        let Step::Offer {
            mut stage,
            mut pattern,
            mut item,
        } = publishing.step
        else {
            unreachable!("the scan step was handled above");
        };
        while stage < 4 {
            let list: &[u32] = if stage < 2 {
                publishing.literal.as_slice()
            } else {
                &publishing.matched
            };
            while let Some(&slot) = list.get(pattern) {
                let finished = if stage % 2 == 0 {
                    self.offer_plain(slot, &mut item, ledger, sink)
                } else {
                    self.offer_groups(slot, &mut item, ledger, sink)
                };
                if !finished {
                    publishing.step = Step::Offer {
                        stage,
                        pattern,
                        item,
                    };
                    return false;
                }
                pattern += 1;
                item = 0;
            }
            stage += 1;
            pattern = 0;
        }
        true
    }

    /// Steps (1) and (3) of a publish for one pattern, from member `next` on: every non-grouped member
    /// not yet served, evicted or departed in this publish gets a copy, or is evicted if it has no room.
    /// Returns `false` if the units ran out first, with `next` at the member to continue with.
    fn offer_plain(
        &mut self,
        pattern: u32,
        next: &mut usize,
        ledger: &mut Ledger,
        sink: &mut impl DeliverySink,
    ) -> bool {
        let epoch = self.epoch;
        let plain = &self.patterns[pattern as usize].plain;
        while let Some(member) = plain.get(*next) {
            if ledger.units == 0 {
                return false;
            }
            *next += 1;
            ledger.spend(1);
            let client = &mut self.clients[member.client as usize];
            if client.copied_in == epoch || client.evicted_in == epoch || client.departed {
                continue;
            }
            if sink.has_room(client.id) {
                sink.deliver(client.id);
                client.copied_in = epoch;
                ledger.delivered();
            } else {
                sink.evict(client.id);
                client.evicted_in = epoch;
            }
        }
        true
    }

    /// Steps (2) and (4) of a publish for one pattern, from group `next` on: each queue group delivers at
    /// most one copy. Returns `false` if the units ran out first, with `next` at the group to continue
    /// with.
    fn offer_groups(
        &mut self,
        pattern: u32,
        next: &mut usize,
        ledger: &mut Ledger,
        sink: &mut impl DeliverySink,
    ) -> bool {
        let groups = &self.patterns[pattern as usize].groups;
        while let Some(&group) = groups.get(*next) {
            if ledger.units == 0 {
                return false;
            }
            *next += 1;
            let group = &mut self.groups[group as usize];
            let (delivered, tried) = offer_to_group(group, &mut self.clients, self.epoch, sink);
            ledger.spend(tried);
            if delivered {
                ledger.delivered();
            }
        }
        true
    }
}

/// What a stretch of a publish may still spend, and the copies the publish has delivered.
struct Ledger {
    units: u64,
    /// Units a delivered copy costs on top of its offer.
    copy_cost: u64,
    count: u64,
}

impl Ledger {
    fn spend(&mut self, units: u64) {
        self.units = self.units.saturating_sub(units);
    }

    fn delivered(&mut self) {
        self.count += 1;
        self.spend(self.copy_cost);
    }
}

/// Offers one signal to a queue group (see [`SignalIndex::continue_publish`]). Returns whether a member
/// took it and how many members were looked at.
fn offer_to_group(
    group: &mut QueueGroup,
    clients: &mut Slots<ClientEntry>,
    epoch: u64,
    sink: &mut impl DeliverySink,
) -> (bool, u64) {
    let size = group.members.len();
    if size == 0 {
        return (false, 1);
    }
    let first = group
        .members
        .slot_of_rank((group.turn % size as u64) as usize);
    group.turn = group.turn.wrapping_add(1);
    let mut tried_first = None;
    let mut tried = 0;
    for (_, member) in group.members.cycle_from(first) {
        tried += 1;
        let client = &clients[member.client as usize];
        if client.evicted_in == epoch {
            continue;
        }
        if sink.has_room(client.id) {
            sink.deliver(client.id);
            return (true, tried);
        }
        tried_first.get_or_insert(member.client);
    }
    if let Some(slot) = tried_first {
        let client = &mut clients[slot as usize];
        sink.evict(client.id);
        client.evicted_in = epoch;
    }
    (false, tried)
}
