module idn.local/tests/cluster/components/pause

go 1.26.0
