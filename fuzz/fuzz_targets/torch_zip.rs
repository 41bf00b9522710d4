//! Arbitrary bytes opened as a torch `.pt` zip from memory: directory, data.pkl, state
//! dict or single tensor, then every tensor read back in every way.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nanochat_pt::TorchFile;

fuzz_target!(|data: &[u8]| {
    let Ok(mut file) = TorchFile::from_bytes(data.to_vec(), "fuzz.pt") else {
        return;
    };
    let mut tensors: Vec<_> = match file.state_dict() {
        Ok(entries) => entries.into_iter().map(|(_, tensor)| tensor).collect(),
        Err(_) => Vec::new(),
    };
    tensors.extend(file.single_tensor());
    let _ = file.tensor(file.root());
    for tensor in tensors {
        let _ = file.storage_file_offset(&tensor.storage_key);
        let _ = file.read_tensor_bytes(&tensor);
        let _ = file.read_f32(&tensor);
        let _ = file.read_i32(&tensor);
    }
});
