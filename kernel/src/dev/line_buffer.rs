//! The bounded buffer between the access log's formatter (in `app`) and the
//! device that carries the log to the host: whole lines go in or are refused
//! (counted as dropped by the caller); bytes come out in order, as far as the
//! device takes them. It lives here, below both, so the console driver can
//! drain it without `dev` importing `app`.

use alloc::vec;
use alloc::vec::Vec;

/// A byte ring of fixed capacity, allocated once.
#[derive(Debug, Clone)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Index of the oldest byte.
    start: usize,
    len: usize,
}

impl LineBuffer {
    pub fn new(capacity: usize) -> LineBuffer {
        LineBuffer {
            buf: vec![0; capacity],
            start: 0,
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `line` whole, or nothing if it does not fit; says which.
    pub fn push(&mut self, line: &[u8]) -> bool {
        let cap = self.buf.len();
        if line.len() > cap - self.len {
            return false;
        }
        let end = (self.start + self.len) % cap.max(1);
        let first = line.len().min(cap - end);
        let (a, b) = line.split_at(first);
        if let Some(dst) = self.buf.get_mut(end..end + first) {
            dst.copy_from_slice(a);
        }
        if let Some(dst) = self.buf.get_mut(..b.len()) {
            dst.copy_from_slice(b);
        }
        self.len += line.len();
        true
    }

    /// Moves the oldest bytes into `out`, as many as fit; returns how many.
    pub fn pop_into(&mut self, out: &mut [u8]) -> usize {
        let cap = self.buf.len();
        let n = out.len().min(self.len);
        let first = n.min(cap - self.start);
        let src_a = self
            .buf
            .get(self.start..self.start + first)
            .unwrap_or_default();
        let src_b = self.buf.get(..n - first).unwrap_or_default();
        if let Some(dst) = out.get_mut(..first) {
            dst.copy_from_slice(src_a);
        }
        if let Some(dst) = out.get_mut(first..n) {
            dst.copy_from_slice(src_b);
        }
        self.len -= n;
        self.start = if self.len == 0 {
            0
        } else {
            (self.start + n) % cap
        };
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_or_nothing_and_fifo_across_the_wrap() {
        let mut b = LineBuffer::new(10);
        assert!(b.push(b"abcd\n"));
        assert!(b.push(b"efg\n"));
        assert!(!b.push(b"hi\n"), "9 of 10 used: a 3-byte line does not fit");
        let mut out = [0u8; 6];
        assert_eq!(b.pop_into(&mut out), 6);
        assert_eq!(&out, b"abcd\ne");
        assert!(b.push(b"hijkl\n"), "wraps");
        let mut out = [0u8; 32];
        let n = b.pop_into(&mut out);
        assert_eq!(&out[..n], b"fg\nhijkl\n");
        assert!(b.is_empty());
        assert!(!b.push(&[b'x'; 11]));
        assert!(b.push(&[b'x'; 10]));
        assert_eq!(b.len(), b.capacity());
    }

    #[test]
    fn random_traffic_keeps_order() {
        let mut b = LineBuffer::new(97);
        let (mut sent, mut got, mut refused) = (Vec::new(), Vec::new(), 0);
        let mut seed = 12345u32;
        for i in 0..5000u32 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let line: Vec<u8> =
                alloc::format!("{i}:{}\n", "y".repeat((seed >> 20) as usize % 20)).into();
            if b.push(&line) {
                sent.extend_from_slice(&line);
            } else {
                refused += 1;
            }
            let mut out = vec![0u8; (seed >> 8) as usize % 40];
            let n = b.pop_into(&mut out);
            got.extend_from_slice(&out[..n]);
        }
        let mut out = vec![0u8; 200];
        let n = b.pop_into(&mut out);
        got.extend_from_slice(&out[..n]);
        assert_eq!(got, sent);
        assert!(refused > 0);
    }
}
