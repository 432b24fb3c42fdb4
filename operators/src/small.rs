//! A short list kept in place. Most packages have one or two item lines (about 60% one, 28%
//! two in the generated traffic), so a package's items and its duty lines are held inside the
//! package and the duty, without an allocation of their own; longer lists move to the heap.
//!
//! It reads as a slice (`Deref`): `list.iter()`, `list[0]`, `list.len()`, `for x in &list`.

use std::fmt;
use std::ops::{Deref, DerefMut};

/// Up to `N` elements in place, any number beyond on the heap. The elements are plain values
/// (`Copy`): item lines, pairs of keys.
#[derive(Clone)]
pub struct SmallList<T: Default + Copy, const N: usize> {
    /// The number of elements in `inline`, while `heap` is empty.
    len: usize,
    /// The elements while there are at most `N`; the unused slots hold `T::default()`.
    inline: [T; N],
    /// Every element, once there have been more than `N` (then `len` is 0).
    heap: Vec<T>,
}

impl<T: Default + Copy, const N: usize> SmallList<T, N> {
    pub fn new() -> Self {
        SmallList {
            len: 0,
            // A copy of one default element (`T: Copy`), not `array::from_fn` or `array::map`:
            // their generic machinery moved each element through several stack copies, wide
            // loads of narrower stores that stall (a tenth of the operator core's time).
            inline: [T::default(); N],
            heap: Vec::new(),
        }
    }

    #[inline]
    pub fn push(&mut self, value: T) {
        if self.heap.is_empty() && self.len < N {
            self.inline[self.len] = value;
            self.len += 1;
        } else {
            self.push_on_heap(value);
        }
    }

    /// [`SmallList::push`] of an element that does not fit in place: the elements move to the
    /// heap first (once).
    #[cold]
    #[inline(never)]
    fn push_on_heap(&mut self, value: T) {
        if self.heap.is_empty() {
            self.heap.reserve(2 * N + 2);
            let len = std::mem::take(&mut self.len);
            self.heap.extend(self.inline[..len].iter_mut().map(std::mem::take));
        }
        self.heap.push(value);
    }

    /// Keeps the elements for which `keep` is true, in their order (as `Vec::retain`).
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        if !self.heap.is_empty() {
            // Emptied, the heap leaves `len` 0: the list is empty, and takes in place again.
            self.heap.retain(keep);
            return;
        }
        let mut kept = 0;
        for i in 0..self.len {
            if keep(&self.inline[i]) {
                self.inline.swap(kept, i);
                kept += 1;
            }
        }
        for slot in &mut self.inline[kept..self.len] {
            *slot = T::default();
        }
        self.len = kept;
    }
}

impl<T: Default + Copy, const N: usize> Default for SmallList<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Default + Copy, const N: usize> Deref for SmallList<T, N> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        if self.heap.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }
}

impl<T: Default + Copy, const N: usize> DerefMut for SmallList<T, N> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        if self.heap.is_empty() {
            &mut self.inline[..self.len]
        } else {
            &mut self.heap
        }
    }
}

impl<T: Default + Copy, const N: usize> FromIterator<T> for SmallList<T, N> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut list = Self::new();
        for value in iter {
            list.push(value);
        }
        list
    }
}

impl<'l, T: Default + Copy, const N: usize> IntoIterator for &'l SmallList<T, N> {
    type Item = &'l T;
    type IntoIter = std::slice::Iter<'l, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'l, T: Default + Copy, const N: usize> IntoIterator for &'l mut SmallList<T, N> {
    type Item = &'l mut T;
    type IntoIter = std::slice::IterMut<'l, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

/// Written as a list, as a `Vec` is.
impl<T: Default + Copy + fmt::Debug, const N: usize> fmt::Debug for SmallList<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Equal when the elements are, wherever they are kept.
impl<T: Default + Copy + PartialEq, const N: usize> PartialEq for SmallList<T, N> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn behaves_as_a_vec(values in proptest::collection::vec(proptest::num::u32::ANY, 0..12)) {
            let mut list: SmallList<u32, 2> = SmallList::new();
            for (i, &v) in values.iter().enumerate() {
                list.push(v);
                proptest::prop_assert_eq!(&list[..], &values[..=i]);
            }
            proptest::prop_assert_eq!(&list[..], &values[..]);
            let collected: SmallList<u32, 2> = values.iter().copied().collect();
            proptest::prop_assert_eq!(&collected, &list);
            proptest::prop_assert_eq!(format!("{list:?}"), format!("{values:?}"));
            for x in &mut list {
                *x = x.wrapping_add(1);
            }
            let plus: Vec<u32> = values.iter().map(|x| x.wrapping_add(1)).collect();
            proptest::prop_assert_eq!(&list[..], &plus[..]);
            proptest::prop_assert_eq!(list.clone(), list);
        }

        #[test]
        fn retains_as_a_vec(
            values in proptest::collection::vec(0u32..8, 0..12),
            drop in 0u32..8,
            more in proptest::collection::vec(0u32..8, 0..4),
        ) {
            let mut list: SmallList<u32, 2> = values.iter().copied().collect();
            let mut vec = values.clone();
            list.retain(|&x| x != drop);
            vec.retain(|&x| x != drop);
            proptest::prop_assert_eq!(&list[..], &vec[..]);
            // Still a list after: pushes land after what was kept, in place or not.
            for &v in &more {
                list.push(v);
                vec.push(v);
            }
            proptest::prop_assert_eq!(&list[..], &vec[..]);
        }
    }
}
