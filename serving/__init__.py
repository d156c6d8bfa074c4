"""The serving stage of a region: zone files and the weight file from etcd, and the Corefile for stock CoreDNS."""
