//! The control channel's frames, both directions: whatever bytes arrive, the
//! reader returns frames, the end, or an error, and never panics or
//! allocates past the frame limit; every frame it returns is written back
//! to the same bytes' meaning (it reads back equal).
#![no_main]

use libfuzzer_sys::fuzz_target;
use runcvm_proto::{Frame, GuestMessage, HostMessage, read_frame, write_data, write_message};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

fn frames<M: DeserializeOwned + Serialize + PartialEq + Debug>(mut input: &[u8]) {
    while let Ok(Some(frame)) = read_frame::<M>(&mut input) {
        let mut again = Vec::new();
        match &frame {
            Frame::Message(message) => write_message(&mut again, message).expect("a message encodes"),
            Frame::Data { session, stream, bytes } => {
                write_data(&mut again, *session, *stream, bytes).expect("data encodes");
            }
        }
        let back = read_frame::<M>(&mut again.as_slice()).expect("a written frame reads back");
        assert_eq!(back.as_ref(), Some(&frame));
    }
}

fuzz_target!(|data: &[u8]| {
    frames::<GuestMessage>(data);
    frames::<HostMessage>(data);
});
