fn main() {
    println!("eures-sync");
}
