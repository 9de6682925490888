//! A test worker for Revenant's bounds: `spin` never returns, `grow` allocates without limit,
//! `text` returns as much as asked, `say` writes to stdout and stderr.

use std::cell::RefCell;

wit_bindgen::generate!({
    world: "stress",
    path: "wit",
});

use exports::revenant::stress::api::Guest;

thread_local! {
    static PINGS: RefCell<u64> = const { RefCell::new(0) };
    static KEPT: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

struct Stress;

impl Guest for Stress {
    fn ping() -> u64 {
        PINGS.with_borrow_mut(|n| {
            *n += 1;
            *n
        })
    }

    fn spin() {
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    fn text(megabytes: u32) -> String {
        "x".repeat(megabytes as usize * 1024 * 1024)
    }

    fn quit(code: u32) {
        std::process::exit(code as i32);
    }

    fn say(lines: u32, width: u32) -> u64 {
        let n = Self::ping();
        for i in 1..=lines {
            let line = format!("call {n} line {i} ");
            let pad = (width as usize).saturating_sub(line.len());
            println!("{line}{}", "x".repeat(pad));
        }
        eprintln!("call {n} done");
        n
    }

    fn grow(megabytes: u32) -> u32 {
        KEPT.with_borrow_mut(|kept| {
            for _ in 0..megabytes {
                kept.push(vec![1u8; 1024 * 1024]);
            }
            kept.len() as u32
        })
    }
}

export!(Stress);
