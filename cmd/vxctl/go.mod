module github.com/voxscriber/webhooks/cmd/vxctl

go 1.26.0
