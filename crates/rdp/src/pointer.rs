//! The server's copy of one client's pointer cache: which shape each index holds, so a shape
//! shown before goes out as a two-byte Cached Pointer update instead of its pixels again.

use std::sync::Arc;

use rdhost_desktop::CursorShape;
use rdhost_frames::{EncodeError, EncodedFrame, PointerLimits, cached_pointer, default_pointer, pointer_update};

pub(crate) struct PointerCache {
    limits: PointerLimits,
    /// What the client holds at each index, and when it was last shown (for eviction).
    slots: Vec<Option<(Arc<CursorShape>, u64)>>,
    clock: u64,
}

impl PointerCache {
    pub fn new(limits: PointerLimits) -> Self {
        Self { limits, slots: vec![None; usize::from(limits.cache_size)], clock: 0 }
    }

    /// Forget everything: after a reactivation the client may have dropped its cache.
    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|slot| *slot = None);
    }

    /// The update that makes the client show `shape` (`None`: its default arrow).
    pub fn update_for(&mut self, shape: Option<&Arc<CursorShape>>) -> Result<EncodedFrame, EncodeError> {
        let Some(shape) = shape else { return Ok(default_pointer()) };
        // A client without a pointer cache takes no shapes at all (an empty one still hides).
        if self.slots.is_empty() && shape.width > 0 && shape.height > 0 {
            return Ok(default_pointer());
        }
        self.clock += 1;
        let hit = self.slots.iter().position(|slot| slot.as_ref().is_some_and(|(held, _)| Arc::ptr_eq(held, shape) || **held == **shape));
        if let Some(index) = hit {
            if let Some((_, used)) = &mut self.slots[index] {
                *used = self.clock;
            }
            return Ok(cached_pointer(index as u16));
        }
        // An empty slot, else the one shown longest ago.
        let index = self
            .slots
            .iter()
            .position(Option::is_none)
            .or_else(|| self.slots.iter().enumerate().min_by_key(|(_, slot)| slot.as_ref().map_or(0, |(_, used)| *used)).map(|(i, _)| i))
            .unwrap_or(0);
        let bytes = pointer_update(shape, index as u16, &self.limits)?;
        // An empty shape only hides the pointer and stores nothing in the client's cache.
        if shape.width > 0 && shape.height > 0 {
            self.slots[index] = Some((Arc::clone(shape), self.clock));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_core::{Encode as _, decode};
    use ironrdp_pdu::fast_path::{FastPathHeader, FastPathUpdatePdu, UpdateCode};

    fn shape(colour: u8) -> Arc<CursorShape> {
        Arc::new(CursorShape { width: 2, height: 1, hotspot_x: 0, hotspot_y: 0, bgra: vec![colour, 0, 0, 255, 0, colour, 0, 255] })
    }

    /// The update code and the first two payload bytes (the cache index of every kind but the
    /// New Pointer update, whose index follows its two-byte xorBpp).
    fn what(bytes: &[u8]) -> (UpdateCode, Option<u16>) {
        let header: FastPathHeader = decode(bytes).unwrap();
        let pdu: FastPathUpdatePdu<'_> = decode(&bytes[header.size()..header.size() + header.data_length]).unwrap();
        let index = match pdu.update_code {
            UpdateCode::NewPointer => Some(u16::from_le_bytes([pdu.data[2], pdu.data[3]])),
            UpdateCode::CachedPointer => Some(u16::from_le_bytes([pdu.data[0], pdu.data[1]])),
            _ => None,
        };
        (pdu.update_code, index)
    }

    fn limits(cache_size: u16) -> PointerLimits {
        PointerLimits::new(cache_size, true, true, 0x3F_0000)
    }

    #[test]
    fn a_shape_seen_before_is_sent_by_index() {
        let mut cache = PointerCache::new(limits(4));
        let (a, b) = (shape(1), shape(2));
        assert_eq!(what(&cache.update_for(Some(&a)).unwrap()), (UpdateCode::NewPointer, Some(0)));
        assert_eq!(what(&cache.update_for(Some(&b)).unwrap()), (UpdateCode::NewPointer, Some(1)));
        assert_eq!(what(&cache.update_for(Some(&a)).unwrap()), (UpdateCode::CachedPointer, Some(0)));
        // Equal pixels in a new allocation are the same shape.
        assert_eq!(what(&cache.update_for(Some(&shape(2))).unwrap()), (UpdateCode::CachedPointer, Some(1)));
        assert_eq!(what(&cache.update_for(None).unwrap()), (UpdateCode::DefaultPointer, None));
        cache.clear();
        assert_eq!(what(&cache.update_for(Some(&a)).unwrap()), (UpdateCode::NewPointer, Some(0)));
    }

    #[test]
    fn a_full_cache_replaces_the_shape_shown_longest_ago() {
        let mut cache = PointerCache::new(limits(2));
        let (a, b, c) = (shape(1), shape(2), shape(3));
        cache.update_for(Some(&a)).unwrap();
        cache.update_for(Some(&b)).unwrap();
        cache.update_for(Some(&a)).unwrap();
        assert_eq!(what(&cache.update_for(Some(&c)).unwrap()), (UpdateCode::NewPointer, Some(1)), "b was shown longest ago");
        assert_eq!(what(&cache.update_for(Some(&a)).unwrap()), (UpdateCode::CachedPointer, Some(0)));
        assert_eq!(what(&cache.update_for(Some(&b)).unwrap()), (UpdateCode::NewPointer, Some(1)), "c is older than a now");
    }

    #[test]
    fn no_cache_means_default_pointer_and_empty_shapes_hide_without_a_slot() {
        let mut none = PointerCache::new(limits(0));
        assert_eq!(what(&none.update_for(Some(&shape(1))).unwrap()).0, UpdateCode::DefaultPointer);
        let mut cache = PointerCache::new(limits(2));
        let empty = Arc::new(CursorShape { width: 0, height: 0, hotspot_x: 0, hotspot_y: 0, bgra: vec![] });
        assert_eq!(what(&cache.update_for(Some(&empty)).unwrap()).0, UpdateCode::HiddenPointer);
        assert_eq!(what(&cache.update_for(Some(&empty)).unwrap()).0, UpdateCode::HiddenPointer);
        assert_eq!(what(&cache.update_for(Some(&shape(1))).unwrap()), (UpdateCode::NewPointer, Some(0)));
    }
}
