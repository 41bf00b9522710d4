//! The zip stream torch's `PyTorchStreamWriter` produces through its bundled miniz:
//! every entry stored, padded so its payload starts 64-byte aligned, streamed with a data
//! descriptor, and the archive always ends with zip64 end records.
//!
//! Per entry (`mz_zip_writer_add_mem_ex_v2` in zip64 mode, with torch's `getPadding`):
//! * local header: version 0, flags `0x0808` (data descriptor + UTF-8; `0x0800` for an
//!   empty entry, which gets no descriptor), method 0, time/date 0, CRC and sizes 0;
//! * extra field: a zip64 field (id 1: uncompressed size and a *zero* compressed size when
//!   the size is ≥ 0xFFFFFFFF, the header offset when that is ≥ 0xFFFFFFFF), then torch's
//!   `"FB"` field of `'Z'` bytes that aligns the payload;
//! * descriptor `PK\x07\x08`, CRC, sizes: 32-bit sizes, or 64-bit ones when the local
//!   header had a zip64 field;
//! * central record: made-by 0, needed 0, same flags, sizes/offset capped at 0xFFFFFFFF
//!   with the real values in a zip64 field, no `FB` field.
//!
//! Each `emit` is one miniz write call; torch watches those calls for descriptors to
//! build the CRC half of the serialization id, and this writer does the same.

use std::io::{self, Write};

use crate::serialization_id::hash_combine;

/// Payload alignment (`kFieldAlignment`, recorded as `.storage_alignment`).
pub(crate) const ALIGNMENT: u64 = 64;
const LOCAL_HEADER_SIZE: u64 = 30;
const U32_LIMIT: u64 = 0xffff_ffff;
const DESCRIPTOR_SIGNATURE: [u8; 4] = *b"PK\x07\x08";

/// Writes stored entries one after another, then the directory.
pub(crate) struct StoredZipWriter<W: Write> {
    output: W,
    position: u64,
    central_directory: Vec<u8>,
    entry_count: u64,
    combined_descriptor_crc: u64,
}

impl<W: Write> StoredZipWriter<W> {
    pub fn new(output: W) -> Self {
        StoredZipWriter {
            output,
            position: 0,
            central_directory: Vec::new(),
            entry_count: 0,
            combined_descriptor_crc: 0,
        }
    }

    /// `c10::hash_combine` over the CRCs of the descriptors written so far.
    pub fn combined_descriptor_crc(&self) -> u64 {
        self.combined_descriptor_crc
    }

    fn emit(&mut self, chunk: &[u8]) -> io::Result<()> {
        if chunk.len() >= 8 && chunk[..4] == DESCRIPTOR_SIGNATURE {
            let crc = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            self.combined_descriptor_crc =
                hash_combine(self.combined_descriptor_crc, u64::from(crc));
        }
        self.output.write_all(chunk)?;
        self.position += chunk.len() as u64;
        Ok(())
    }

    /// Appends one stored entry named `name` (full path inside the archive).
    pub fn add_entry(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let header_offset = self.position;
        let size = data.len() as u64;
        let large_size = size >= U32_LIMIT;
        let large_offset = header_offset >= U32_LIMIT;
        let local_zip64 = zip64_field(
            large_size.then_some((size, 0)),
            large_offset.then_some(header_offset),
        );
        let alignment_field =
            alignment_field(header_offset, name.len() as u64, large_size, large_offset);
        let flags: u16 = if size > 0 { 0x0808 } else { 0x0800 };
        let crc = crc32fast::hash(data);

        let mut header = Vec::with_capacity(LOCAL_HEADER_SIZE as usize);
        header.extend_from_slice(b"PK\x03\x04");
        header.extend_from_slice(&0u16.to_le_bytes()); // version needed
        header.extend_from_slice(&flags.to_le_bytes());
        header.extend_from_slice(&[0; 2 + 2 + 2 + 4 + 4 + 4]); // method, time, date, CRC, sizes
        header.extend_from_slice(&(name.len() as u16).to_le_bytes());
        header
            .extend_from_slice(&((local_zip64.len() + alignment_field.len()) as u16).to_le_bytes());
        self.emit(&header)?;
        self.emit(name.as_bytes())?;
        if !local_zip64.is_empty() {
            self.emit(&local_zip64)?;
        }
        self.emit(&alignment_field)?;
        self.emit(data)?;
        if size > 0 {
            let mut descriptor = DESCRIPTOR_SIGNATURE.to_vec();
            descriptor.extend_from_slice(&crc.to_le_bytes());
            if local_zip64.is_empty() {
                descriptor.extend_from_slice(&(size as u32).to_le_bytes());
                descriptor.extend_from_slice(&(size as u32).to_le_bytes());
            } else {
                descriptor.extend_from_slice(&size.to_le_bytes());
                descriptor.extend_from_slice(&size.to_le_bytes());
            }
            self.emit(&descriptor)?;
        }

        let central_zip64 = zip64_field(
            large_size.then_some((size, size)),
            large_offset.then_some(header_offset),
        );
        let record = &mut self.central_directory;
        record.extend_from_slice(b"PK\x01\x02");
        record.extend_from_slice(&[0; 2 + 2]); // version made by, version needed
        record.extend_from_slice(&flags.to_le_bytes());
        record.extend_from_slice(&[0; 2 + 2 + 2]); // method, time, date
        record.extend_from_slice(&crc.to_le_bytes());
        record.extend_from_slice(&(size.min(U32_LIMIT) as u32).to_le_bytes());
        record.extend_from_slice(&(size.min(U32_LIMIT) as u32).to_le_bytes());
        record.extend_from_slice(&(name.len() as u16).to_le_bytes());
        record.extend_from_slice(&(central_zip64.len() as u16).to_le_bytes());
        record.extend_from_slice(&[0; 2 + 2 + 2 + 4]); // comment length, disk, attributes
        record.extend_from_slice(&(header_offset.min(U32_LIMIT) as u32).to_le_bytes());
        record.extend_from_slice(name.as_bytes());
        record.extend_from_slice(&central_zip64);
        self.entry_count += 1;
        Ok(())
    }

    /// Writes the central directory and the (always present) zip64 end records.
    pub fn finish(mut self) -> io::Result<W> {
        let directory_offset = self.position;
        let directory = std::mem::take(&mut self.central_directory);
        let directory_size = directory.len() as u64;
        self.emit(&directory)?;

        let zip64_end_offset = self.position;
        let mut zip64_end = b"PK\x06\x06".to_vec();
        zip64_end.extend_from_slice(&44u64.to_le_bytes()); // size of the rest of the record
        zip64_end.extend_from_slice(&0x031eu16.to_le_bytes()); // made by (miniz: "Unix")
        zip64_end.extend_from_slice(&0x002du16.to_le_bytes()); // needed: 4.5
        zip64_end.extend_from_slice(&[0; 4 + 4]); // disk numbers
        zip64_end.extend_from_slice(&self.entry_count.to_le_bytes());
        zip64_end.extend_from_slice(&self.entry_count.to_le_bytes());
        zip64_end.extend_from_slice(&directory_size.to_le_bytes());
        zip64_end.extend_from_slice(&directory_offset.to_le_bytes());
        self.emit(&zip64_end)?;

        let mut locator = b"PK\x06\x07".to_vec();
        locator.extend_from_slice(&0u32.to_le_bytes());
        locator.extend_from_slice(&zip64_end_offset.to_le_bytes());
        locator.extend_from_slice(&1u32.to_le_bytes());
        self.emit(&locator)?;

        let entries = self.entry_count.min(0xffff) as u16;
        let mut end = b"PK\x05\x06".to_vec();
        end.extend_from_slice(&[0; 2 + 2]);
        end.extend_from_slice(&entries.to_le_bytes());
        end.extend_from_slice(&entries.to_le_bytes());
        end.extend_from_slice(&(directory_size.min(U32_LIMIT) as u32).to_le_bytes());
        end.extend_from_slice(&(directory_offset.min(U32_LIMIT) as u32).to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        self.emit(&end)?;
        self.output.flush()?;
        Ok(self.output)
    }
}

/// miniz's zip64 extended-information field, or nothing when no value needs it.
fn zip64_field(sizes: Option<(u64, u64)>, header_offset: Option<u64>) -> Vec<u8> {
    let mut values = Vec::new();
    if let Some((uncompressed, compressed)) = sizes {
        values.extend_from_slice(&uncompressed.to_le_bytes());
        values.extend_from_slice(&compressed.to_le_bytes());
    }
    if let Some(offset) = header_offset {
        values.extend_from_slice(&offset.to_le_bytes());
    }
    if values.is_empty() {
        return values;
    }
    let mut field = 1u16.to_le_bytes().to_vec();
    field.extend_from_slice(&(values.len() as u16).to_le_bytes());
    field.extend_from_slice(&values);
    field
}

/// torch's `getPadding`: an `"FB"` extra field of `'Z'`s after which the payload starts
/// on a multiple of [`ALIGNMENT`].
fn alignment_field(
    header_offset: u64,
    name_length: u64,
    large_size: bool,
    large_offset: bool,
) -> Vec<u8> {
    let mut payload_start = header_offset + LOCAL_HEADER_SIZE + name_length + 4;
    if large_size || large_offset {
        payload_start += 4;
        if large_size {
            payload_start += 16;
        }
        if large_offset {
            payload_start += 8;
        }
    }
    let padding = (ALIGNMENT - payload_start % ALIGNMENT) % ALIGNMENT;
    let mut field = b"FB".to_vec();
    field.extend_from_slice(&(padding as u16).to_le_bytes());
    field.resize(4 + padding as usize, b'Z');
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that pretends `position` bytes were already written.
    fn writer_at(position: u64) -> StoredZipWriter<Vec<u8>> {
        StoredZipWriter {
            position,
            ..StoredZipWriter::new(Vec::new())
        }
    }

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([bytes[at], bytes[at + 1]])
    }

    #[test]
    fn small_entry_layout() {
        let mut writer = writer_at(0);
        writer
            .add_entry("archive/data.pkl", b"0123456789")
            .expect("add");
        let bytes = writer.output.clone();
        assert_eq!(&bytes[..8], b"PK\x03\x04\x00\x00\x08\x08");
        assert_eq!(
            u16_at(&bytes, 28),
            18,
            "FB field pads the payload to offset 64"
        );
        assert_eq!(&bytes[46..50], b"FB\x0e\x00");
        assert_eq!(&bytes[64..74], b"0123456789");
        assert_eq!(&bytes[74..78], b"PK\x07\x08");
        assert_eq!(bytes.len(), 74 + 16);
        assert_eq!(
            writer.combined_descriptor_crc(),
            hash_combine(0, u64::from(crc32fast::hash(b"0123456789")))
        );
    }

    #[test]
    fn entry_beyond_4_gib_gets_zip64_offset_fields() {
        let start = 0x1_0000_0010u64;
        let mut writer = writer_at(start);
        writer.add_entry("m/data/1", b"abc").expect("add");
        let bytes = writer.output.clone();
        let extra_length = u16_at(&bytes, 28) as usize;
        let extra = &bytes[30 + 8..30 + 8 + extra_length];
        // zip64 field with only the header offset, then the alignment field.
        assert_eq!(&extra[..4], b"\x01\x00\x08\x00");
        assert_eq!(&extra[4..12], &start.to_le_bytes());
        assert_eq!(&extra[12..14], b"FB");
        let payload_start = start + 30 + 8 + extra_length as u64;
        assert_eq!(payload_start % 64, 0);
        // The descriptor switches to 64-bit sizes because the header had a zip64 field.
        let descriptor = &bytes[30 + 8 + extra_length + 3..];
        assert_eq!(descriptor.len(), 24);
        assert_eq!(&descriptor[8..16], &3u64.to_le_bytes());
        // Central record: offset capped, real one in its own zip64 field; no FB field.
        let central = &writer.central_directory;
        assert_eq!(&central[42..46], &[0xff; 4]);
        assert_eq!(u16_at(central, 30), 12);
        assert_eq!(
            &central[46 + 8..46 + 8 + 12],
            &[&[1u8, 0, 8, 0][..], &start.to_le_bytes()].concat()[..]
        );
    }

    #[test]
    fn end_records_cap_values_beyond_32_bits() {
        let mut writer = writer_at(0x1_2345_6789);
        writer.add_entry("m/version", b"3\n").expect("add");
        let directory_offset = writer.position;
        let bytes = writer.finish().expect("finish");
        let end = &bytes[bytes.len() - 22..];
        assert_eq!(&end[..4], b"PK\x05\x06");
        assert_eq!(&end[16..20], &[0xff; 4], "directory offset capped");
        let locator = &bytes[bytes.len() - 42..bytes.len() - 22];
        assert_eq!(&locator[..4], b"PK\x06\x07");
        let zip64_end = &bytes[bytes.len() - 98..bytes.len() - 42];
        assert_eq!(&zip64_end[..4], b"PK\x06\x06");
        assert_eq!(&zip64_end[48..56], &directory_offset.to_le_bytes());
    }

    #[test]
    fn empty_entry_has_no_descriptor() {
        let mut writer = writer_at(0);
        writer.add_entry("m/data/0", b"").expect("add");
        assert_eq!(&writer.output[6..8], b"\x00\x08");
        assert!(!writer
            .output
            .windows(4)
            .any(|window| window == DESCRIPTOR_SIGNATURE));
        assert_eq!(writer.combined_descriptor_crc(), 0);
    }
}
