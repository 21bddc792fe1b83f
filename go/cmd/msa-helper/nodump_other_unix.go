//go:build unix && !linux

package main

func notDumpable() error { return nil }
