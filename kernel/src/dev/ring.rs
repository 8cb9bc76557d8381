//! Virtqueue index bookkeeping: every 16-bit ring index computation in the
//! driver goes through here, with wrapping arithmetic, so the 65535 -> 0 wrap
//! is handled (and tested) in one place.

/// What the driver has done with one queue, as free-running 16-bit indices
/// (the same values as the ring's `avail.idx` and the driver's last-seen
/// `used.idx`), plus how many times each has wrapped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingIndices {
    pub avail: u16,
    pub used: u16,
    pub avail_wraps: u64,
    pub used_wraps: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingViolation {
    /// More buffers outstanding than the queue holds.
    InFlightExceedsQueue { in_flight: u16, queue_size: u16 },
}

impl RingIndices {
    /// A buffer was made available to the device.
    pub fn posted(&mut self) {
        self.avail = self.avail.wrapping_add(1);
        if self.avail == 0 {
            self.avail_wraps += 1;
        }
    }

    /// The device returned a buffer (a used entry was consumed).
    pub fn completed(&mut self) {
        self.used = self.used.wrapping_add(1);
        if self.used == 0 {
            self.used_wraps += 1;
        }
    }

    /// Buffers the device holds now.
    pub fn in_flight(&self) -> u16 {
        self.avail.wrapping_sub(self.used)
    }

    /// The invariant the driver relies on: never more outstanding than the queue size.
    pub fn audit(&self, queue_size: u16) -> Result<(), RingViolation> {
        let in_flight = self.in_flight();
        if in_flight > queue_size {
            return Err(RingViolation::InFlightExceedsQueue {
                in_flight,
                queue_size,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_across_the_wrap() {
        let mut r = RingIndices {
            avail: 65530,
            used: 65530,
            ..Default::default()
        };
        for _ in 0..10 {
            r.posted();
        }
        assert_eq!(r.avail, 4);
        assert_eq!(r.avail_wraps, 1);
        assert_eq!(r.in_flight(), 10);
        for _ in 0..7 {
            r.completed();
        }
        assert_eq!(r.used, 1);
        assert_eq!(r.used_wraps, 1);
        assert_eq!(r.in_flight(), 3);
        assert_eq!(r.audit(16), Ok(()));
    }

    #[test]
    fn many_wraps_keep_the_invariant() {
        let mut r = RingIndices::default();
        for round in 0..300_000u32 {
            r.posted();
            if round % 3 != 0 {
                r.completed();
            }
            while r.in_flight() > 16 {
                r.completed();
            }
            assert_eq!(r.audit(16), Ok(()));
        }
        assert!(r.avail_wraps >= 4 && r.used_wraps >= 4);
    }

    #[test]
    fn audit_catches_overcommit() {
        let r = RingIndices {
            avail: 3,
            used: 65535,
            ..Default::default()
        };
        assert_eq!(r.in_flight(), 4);
        assert_eq!(
            r.audit(2),
            Err(RingViolation::InFlightExceedsQueue {
                in_flight: 4,
                queue_size: 2
            })
        );
    }
}
