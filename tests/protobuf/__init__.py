"""The protobuf library's view of the messages Shoal reads and writes by hand.

The agent never builds protobuf message objects (agent/protowire.py and the
codecs join bytes); these classes, built from descriptors in code because
there is no protoc here, let tests build real payloads and check that what we
write is what the library reads.
"""
