#!/bin/sh
echo "$GREETING from pybuild: $(cat /app/build-info), running as $(id -un)"
