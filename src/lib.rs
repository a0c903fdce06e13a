pub use temper_data as data;
