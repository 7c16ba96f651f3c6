module meterplane/bench/loadgen

go 1.21
