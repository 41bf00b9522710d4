//! A real checkpoint over 4 GiB (a 4 GiB + 100 B tensor, then a small one stored past the
//! 4 GiB mark): the zip64 records torch writes, read back by our reader. Not part of the test
//! suite because it writes 4 GiB; run it with
//! `cargo run -p nanochat-pt --release --example zip64_check` (it panics on a mismatch).
//! Set `NANOCHAT_PT_KEEP_ZIP64=1` to keep the file for checking with other zip tools.

use nanochat_pt::{write_torch_file, DType, SaveRoot, TensorToWrite, TorchFile};

fn main() {
    let big_length = (1usize << 32) + 100;
    let mut big = vec![0u8; big_length];
    big[0] = 1;
    big[big_length - 1] = 2;
    let small: Vec<u8> = [1.5f32, -2.5]
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect();
    let root = SaveRoot::StateDict {
        tensors: vec![
            (
                "big".to_owned(),
                TensorToWrite {
                    dtype: DType::U8,
                    shape: vec![big_length],
                    data: &big,
                },
            ),
            (
                "small".to_owned(),
                TensorToWrite {
                    dtype: DType::F32,
                    shape: vec![2],
                    data: &small,
                },
            ),
        ],
        module_versions: Some(vec![(String::new(), 1)]),
    };
    let path = std::env::temp_dir().join("nanochat-pt-zip64.pt");
    write_torch_file(&path, "zip64", &root).expect("write");
    drop(big);

    let mut file = TorchFile::open(&path).expect("open");
    let state_dict = file.state_dict().expect("state dict");
    assert_eq!(state_dict[0].1.shape, vec![big_length]);
    let (big_offset, big_stored) = file.storage_file_offset("0").expect("big offset");
    assert_eq!((big_offset % 64, big_stored), (0, big_length as u64));
    let (small_offset, _) = file.storage_file_offset("1").expect("small offset");
    assert!(small_offset > 1 << 32 && small_offset % 64 == 0);
    assert_eq!(
        file.read_f32(&state_dict[1].1).expect("small"),
        vec![1.5, -2.5]
    );
    let big_bytes = file.storage_bytes("0").expect("big bytes");
    assert_eq!((big_bytes[0], big_bytes[big_length - 1]), (1, 2));
    if std::env::var_os("NANOCHAT_PT_KEEP_ZIP64").is_none() {
        std::fs::remove_file(&path).ok();
    }
}
