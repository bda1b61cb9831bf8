//! Opening a GGUF file with errors that say what is wrong with it in words:
//! empty, not a GGUF file at all, a cut header, or tensors that run past the
//! end of the file (an interrupted download).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::quantized::gguf_file::Content;

const MAGIC: &[u8; 4] = b"GGUF";

/// Read the header of the GGUF file at `path` and check that every tensor
/// it lists lies inside the file. Returns the header and a reader for the
/// tensors.
pub fn open(path: &Path) -> Result<(Content, BufReader<File>)> {
    let name = path.display();
    let file = File::open(path).with_context(|| format!("cannot open model file {name}"))?;
    let len = file
        .metadata()
        .with_context(|| format!("cannot read model file {name}"))?
        .len();
    if len == 0 {
        bail!("{name} is empty (0 bytes), not a GGUF model");
    }
    let mut reader = BufReader::new(file);
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut reader, &mut magic)?;
    if got < MAGIC.len() || magic != *MAGIC {
        bail!(
            "{name} is not a GGUF model file (it starts with {:?}, a GGUF file with \"GGUF\")",
            String::from_utf8_lossy(&magic[..got])
        );
    }
    reader.seek(SeekFrom::Start(0))?;
    let content = Content::read(&mut reader).map_err(|err| {
        anyhow::anyhow!(
            "{name}: the GGUF header is cut short or corrupt ({err}); the file may be truncated"
        )
    })?;
    let mut needed = content.tensor_data_offset;
    for info in content.tensor_infos.values() {
        let dtype = info.ggml_dtype;
        let bytes = info.shape.elem_count() / dtype.block_size() * dtype.type_size();
        needed = needed.max(content.tensor_data_offset + info.offset + bytes as u64);
    }
    if needed > len {
        bail!(
            "{name} is truncated: its tensors need {needed} bytes, the file has {len} (an interrupted download?)"
        );
    }
    Ok((content, reader))
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, bytes).unwrap();
        match open(&path) {
            Ok(_) => panic!("a bad file was accepted"),
            Err(err) => format!("{err:#}"),
        }
    }

    #[test]
    fn bad_files_are_named_and_explained() {
        assert!(error_of(b"").contains("m.gguf is empty (0 bytes)"));
        let text = error_of(b"def f():\n    pass\n");
        assert!(text.contains("is not a GGUF model file"), "{text}");
        assert!(text.contains("def "), "{text}");
        // The magic and a version, then nothing.
        let cut = error_of(b"GGUF\x03\x00\x00\x00\x05");
        assert!(cut.contains("cut short or corrupt"), "{cut}");
    }

    #[test]
    fn a_file_whose_tensors_run_past_its_end_is_called_truncated() {
        use candle_core::quantized::{QTensor, gguf_file};
        use candle_core::{Device, Tensor};
        let weights = Tensor::zeros((64, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
        let tensor = QTensor::quantize(&weights, candle_core::quantized::GgmlDType::F32).unwrap();
        let mut bytes = std::io::Cursor::new(Vec::new());
        let arch = gguf_file::Value::String("llama".into());
        gguf_file::write(
            &mut bytes,
            &[("general.architecture", &arch)],
            &[("w", &tensor)],
        )
        .unwrap();
        let whole = bytes.into_inner();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("whole.gguf");
        std::fs::write(&path, &whole).unwrap();
        assert!(open(&path).is_ok(), "the whole file opens");
        let cut = error_of(&whole[..whole.len() - 100]);
        assert!(cut.contains("m.gguf is truncated"), "{cut}");
    }
}
