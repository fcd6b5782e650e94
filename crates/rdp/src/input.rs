//! RDP input events to protocol-neutral desktop input.
//!
//! Decoded here from the raw pointer flags rather than through IronRDP's conversions, which
//! drop the middle button and the horizontal wheel (research/ironrdp.md §1).

use ironrdp_pdu::input::fast_path::{FastPathInputEvent, KeyboardFlags as FpKeyboardFlags, SynchronizeFlags};
use ironrdp_pdu::input::mouse::PointerFlags;
use ironrdp_pdu::input::mouse_x::PointerXFlags;
use ironrdp_pdu::input::sync::SyncToggleFlags;
use ironrdp_pdu::input::{InputEvent as SlowInputEvent, MousePdu, MouseXPdu};
use rdhost_desktop::{InputEvent, MouseButton, Scancode, WheelAxis};

pub(crate) fn from_fastpath(event: &FastPathInputEvent, out: &mut Vec<InputEvent>) {
    match *event {
        FastPathInputEvent::KeyboardEvent(flags, code) => out.push(InputEvent::Key {
            scancode: Scancode::new(code, flags.contains(FpKeyboardFlags::EXTENDED)),
            pressed: !flags.contains(FpKeyboardFlags::RELEASE),
        }),
        FastPathInputEvent::UnicodeKeyboardEvent(flags, code_unit) => {
            out.push(InputEvent::Unicode { code_unit, pressed: !flags.contains(FpKeyboardFlags::RELEASE) })
        }
        FastPathInputEvent::MouseEvent(ref pdu) => mouse(pdu, out),
        FastPathInputEvent::MouseEventEx(ref pdu) => mouse_x(pdu, out),
        FastPathInputEvent::SyncEvent(flags) => out.push(InputEvent::LockState {
            caps_lock: flags.contains(SynchronizeFlags::CAPS_LOCK),
            num_lock: flags.contains(SynchronizeFlags::NUM_LOCK),
            scroll_lock: flags.contains(SynchronizeFlags::SCROLL_LOCK),
        }),
        // Relative mouse needs a capture model the desktops do not have; QoE is informational.
        FastPathInputEvent::MouseEventRel(_) | FastPathInputEvent::QoeEvent(_) => {}
    }
}

pub(crate) fn from_slow_path(event: &SlowInputEvent, out: &mut Vec<InputEvent>) {
    use ironrdp_pdu::input::scan_code::KeyboardFlags;
    use ironrdp_pdu::input::unicode::KeyboardFlags as UnicodeFlags;
    match event {
        SlowInputEvent::ScanCode(pdu) => out.push(InputEvent::Key {
            scancode: Scancode::new((pdu.key_code & 0xFF) as u8, pdu.flags.contains(KeyboardFlags::EXTENDED)),
            pressed: !pdu.flags.contains(KeyboardFlags::RELEASE),
        }),
        SlowInputEvent::Unicode(pdu) => out.push(InputEvent::Unicode {
            code_unit: pdu.unicode_code,
            pressed: !pdu.flags.contains(UnicodeFlags::RELEASE),
        }),
        SlowInputEvent::Sync(pdu) => out.push(InputEvent::LockState {
            caps_lock: pdu.flags.contains(SyncToggleFlags::CAPS_LOCK),
            num_lock: pdu.flags.contains(SyncToggleFlags::NUM_LOCK),
            scroll_lock: pdu.flags.contains(SyncToggleFlags::SCROLL_LOCK),
        }),
        SlowInputEvent::Mouse(pdu) => mouse(pdu, out),
        SlowInputEvent::MouseX(pdu) => mouse_x(pdu, out),
        SlowInputEvent::MouseRel(_) | SlowInputEvent::Unused(_) => {}
    }
}

fn mouse(pdu: &MousePdu, out: &mut Vec<InputEvent>) {
    let (x, y) = (pdu.x_position, pdu.y_position);
    let flags = pdu.flags;
    let wheel = flags.intersects(PointerFlags::VERTICAL_WHEEL | PointerFlags::HORIZONTAL_WHEEL);
    if wheel {
        // The PDU decoder already sign-extends the 9-bit rotation field.
        let delta = pdu.number_of_wheel_rotation_units;
        let axis = if flags.contains(PointerFlags::HORIZONTAL_WHEEL) { WheelAxis::Horizontal } else { WheelAxis::Vertical };
        // Horizontal: positive is to the right, as WM_MOUSEHWHEEL has it and as FreeRDP sends
        // it (its X client turns button 6, left, into a negative rotation).
        out.push(InputEvent::Wheel { axis, delta, x, y });
        return;
    }
    if flags.contains(PointerFlags::MOVE) {
        out.push(InputEvent::PointerMove { x, y });
    }
    let pressed = flags.contains(PointerFlags::DOWN);
    for (flag, button) in [
        (PointerFlags::LEFT_BUTTON, MouseButton::Left),
        (PointerFlags::RIGHT_BUTTON, MouseButton::Right),
        (PointerFlags::MIDDLE_BUTTON_OR_WHEEL, MouseButton::Middle),
    ] {
        if flags.contains(flag) {
            out.push(InputEvent::Button { button, pressed, x, y });
        }
    }
}

fn mouse_x(pdu: &MouseXPdu, out: &mut Vec<InputEvent>) {
    let (x, y) = (pdu.x_position, pdu.y_position);
    let pressed = pdu.flags.contains(PointerXFlags::DOWN);
    for (flag, button) in [(PointerXFlags::BUTTON1, MouseButton::X1), (PointerXFlags::BUTTON2, MouseButton::X2)] {
        if pdu.flags.contains(flag) {
            out.push(InputEvent::Button { button, pressed, x, y });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(flags: u16, units: i16) -> Vec<InputEvent> {
        let mut out = Vec::new();
        mouse(
            &MousePdu { flags: PointerFlags::from_bits_retain(flags), number_of_wheel_rotation_units: units, x_position: 10, y_position: 20 },
            &mut out,
        );
        out
    }

    #[test]
    fn middle_button_is_kept() {
        assert_eq!(
            decode(0x8000 | 0x4000, 0),
            vec![InputEvent::Button { button: MouseButton::Middle, pressed: true, x: 10, y: 20 }]
        );
        assert_eq!(
            decode(0x4000, 0),
            vec![InputEvent::Button { button: MouseButton::Middle, pressed: false, x: 10, y: 20 }]
        );
    }

    #[test]
    fn wheels_decode_with_sign() {
        assert_eq!(
            decode(0x0200 | 0x0100, -120),
            vec![InputEvent::Wheel { axis: WheelAxis::Vertical, delta: -120, x: 10, y: 20 }]
        );
        assert_eq!(
            decode(0x0200, 120),
            vec![InputEvent::Wheel { axis: WheelAxis::Vertical, delta: 120, x: 10, y: 20 }]
        );
        // Horizontal: positive is right on the wire and in our convention.
        assert_eq!(
            decode(0x0400, 120),
            vec![InputEvent::Wheel { axis: WheelAxis::Horizontal, delta: 120, x: 10, y: 20 }]
        );
    }

    #[test]
    fn move_and_click() {
        assert_eq!(decode(0x0800, 0), vec![InputEvent::PointerMove { x: 10, y: 20 }]);
        assert_eq!(
            decode(0x8000 | 0x1000, 0),
            vec![InputEvent::Button { button: MouseButton::Left, pressed: true, x: 10, y: 20 }]
        );
    }
}
