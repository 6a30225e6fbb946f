//! `permitgate-load`: the load generator. A placeholder until the load-testing issue fills
//! it in; it exists so the workspace layout is in place and CI builds it.

fn main() {
    eprintln!("permitgate-load: not implemented yet (see the load generator issue)");
    std::process::exit(2);
}
