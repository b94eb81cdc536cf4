//! The object formats Firehose writes: UNCOMPRESSED, GZIP, ZIP (one entry), Snappy (the xerial
//! snappy-java stream AWS writes, not Google's framing) and HADOOP_SNAPPY (Hadoop's block
//! framing), with their file extensions and S3 Content-Encoding; and ZSTD (one zstd frame), which
//! Kinesis channels write. Deterministic: the same input
//! gives the same bytes, so an object rewritten after a crash is the same object.

use std::io::Write;

/// A delivery stream's CompressionFormat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Uncompressed,
    Gzip,
    Zip,
    Snappy,
    HadoopSnappy,
    /// Kinesis channels only (CompressionType ZSTD).
    Zstd,
}

impl Compression {
    pub fn parse(s: &str) -> Option<Compression> {
        Some(match s {
            "UNCOMPRESSED" => Compression::Uncompressed,
            "GZIP" => Compression::Gzip,
            "ZIP" => Compression::Zip,
            "Snappy" => Compression::Snappy,
            "HADOOP_SNAPPY" => Compression::HadoopSnappy,
            "ZSTD" => Compression::Zstd,
            _ => return None,
        })
    }

    /// The object name's extension (AWS writes `.snappy` for HADOOP_SNAPPY too).
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Uncompressed => "",
            Compression::Gzip => ".gz",
            Compression::Zip => ".zip",
            Compression::Snappy | Compression::HadoopSnappy => ".snappy",
            Compression::Zstd => ".zst",
        }
    }

    /// The Content-Encoding AWS sets on the object.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::Uncompressed => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zip => Some("zip"),
            Compression::Snappy => Some("snappy-java"),
            Compression::HadoopSnappy => Some("hadoop-snappy"),
            Compression::Zstd => Some("zstd"),
        }
    }

    /// The object's bytes; `entry` names the single entry of a ZIP archive.
    pub fn encode(self, data: &[u8], entry: &str) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::Uncompressed => Ok(data.to_vec()),
            Compression::Gzip => {
                // No name and mtime 0 in the header: deterministic.
                let mut e = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::default());
                e.write_all(data)?;
                e.finish()
            }
            Compression::Zip => {
                let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
                let opts = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated)
                    .last_modified_time(zip::DateTime::default());
                w.start_file(entry, opts).map_err(std::io::Error::other)?;
                w.write_all(data)?;
                Ok(w.finish().map_err(std::io::Error::other)?.into_inner())
            }
            Compression::Snappy => snappy_java(data),
            Compression::HadoopSnappy => hadoop_snappy(data),
            // Single-threaded at a fixed level: the same bytes every time.
            Compression::Zstd => zstd::bulk::compress(data, 3),
        }
    }
}

/// snappy-java's block size.
const SNAPPY_BLOCK: usize = 32 * 1024;
/// Hadoop's default snappy buffer.
const HADOOP_BLOCK: usize = 256 * 1024;

/// xerial snappy-java's stream: magic `\x82SNAPPY\0`, version 1, compatible version 1 (both
/// big-endian i32), then blocks of (big-endian i32 length, raw snappy block).
fn snappy_java(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 2 + 16);
    out.extend_from_slice(b"\x82SNAPPY\x00");
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut enc = snap::raw::Encoder::new();
    for chunk in data.chunks(SNAPPY_BLOCK) {
        let c = enc.compress_vec(chunk).map_err(std::io::Error::other)?;
        out.extend_from_slice(&(c.len() as i32).to_be_bytes());
        out.extend_from_slice(&c);
    }
    Ok(out)
}

/// Hadoop's block framing: per block, the raw length (big-endian u32), then the compressed
/// chunk's length (big-endian u32) and the raw snappy chunk.
fn hadoop_snappy(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 2 + 16);
    let mut enc = snap::raw::Encoder::new();
    for block in data.chunks(HADOOP_BLOCK) {
        let c = enc.compress_vec(block).map_err(std::io::Error::other)?;
        out.extend_from_slice(&(block.len() as u32).to_be_bytes());
        out.extend_from_slice(&(c.len() as u32).to_be_bytes());
        out.extend_from_slice(&c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn data() -> Vec<u8> {
        (0..100_000u32).flat_map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect()
    }

    #[test]
    fn every_format_round_trips_and_is_deterministic() {
        let d = data();
        for c in [
            Compression::Uncompressed,
            Compression::Gzip,
            Compression::Zip,
            Compression::Snappy,
            Compression::HadoopSnappy,
            Compression::Zstd,
        ] {
            let a = c.encode(&d, "entry").unwrap();
            assert_eq!(a, c.encode(&d, "entry").unwrap(), "{c:?} is deterministic");
            let back = match c {
                Compression::Uncompressed => a.clone(),
                Compression::Gzip => {
                    let mut v = Vec::new();
                    flate2::read::GzDecoder::new(&a[..]).read_to_end(&mut v).unwrap();
                    v
                }
                Compression::Zip => {
                    let mut z = zip::ZipArchive::new(std::io::Cursor::new(&a)).unwrap();
                    assert_eq!(z.len(), 1);
                    let mut v = Vec::new();
                    z.by_name("entry").unwrap().read_to_end(&mut v).unwrap();
                    v
                }
                Compression::Snappy => {
                    assert_eq!(&a[..8], b"\x82SNAPPY\x00");
                    let mut v = Vec::new();
                    let mut at = 16;
                    while at < a.len() {
                        let n = i32::from_be_bytes(a[at..at + 4].try_into().unwrap()) as usize;
                        v.extend(snap::raw::Decoder::new().decompress_vec(&a[at + 4..at + 4 + n]).unwrap());
                        at += 4 + n;
                    }
                    v
                }
                Compression::Zstd => zstd::stream::decode_all(&a[..]).unwrap(),
                Compression::HadoopSnappy => {
                    let mut v = Vec::new();
                    let mut at = 0;
                    while at < a.len() {
                        let raw = u32::from_be_bytes(a[at..at + 4].try_into().unwrap()) as usize;
                        let n = u32::from_be_bytes(a[at + 4..at + 8].try_into().unwrap()) as usize;
                        let block = snap::raw::Decoder::new().decompress_vec(&a[at + 8..at + 8 + n]).unwrap();
                        assert_eq!(block.len(), raw);
                        v.extend(block);
                        at += 8 + n;
                    }
                    v
                }
            };
            assert_eq!(back, d, "{c:?}");
        }
        assert_eq!(Compression::parse("SNAPPY"), None, "the enum is case-sensitive");
        assert_eq!(Compression::HadoopSnappy.extension(), ".snappy");
    }
}
