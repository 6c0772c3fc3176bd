fn main() {
    print!("{}", ferry::crds::all_crds_yaml());
}
