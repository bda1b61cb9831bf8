use pie_edit::model::{LoadOptions, Model, Session, Tokenizer, source};
use std::sync::Arc;
use std::time::Instant;
fn main() -> anyhow::Result<()> {
    let files = source::ensure_default_model()?;
    let t = Instant::now();
    let tok = Tokenizer::for_model(&files)?;
    let model = Arc::new(Model::load(&files.weights, &LoadOptions::default())?);
    println!("load {:?}", t.elapsed());
    let text = std::fs::read_to_string("assets/demo.py")?;
    let ids = tok.encode(&text);
    for n in [256usize, 512, 1024] {
        let mut s = Session::new(model.clone())?;
        let t = Instant::now();
        s.reset(&ids[..n])?;
        let e = t.elapsed();
        println!(
            "prefill {n}: {:?} = {:.0} tok/s",
            e,
            n as f64 / e.as_secs_f64()
        );
    }
    Ok(())
}
