-- vmrdma.lua: Wireshark/tshark dissector for the vmrdma wire format
-- (RDMA over raw Ethernet, EtherType 0x88B5, see docs/wire-format.md).
--
-- Use it for one run:
--   tshark -X lua_script:tools/wireshark/vmrdma.lua -r capture.pcapng
--   wireshark -X lua_script:tools/wireshark/vmrdma.lua capture.pcapng
-- or install it for your user (Wireshark and tshark load it at start):
--   mkdir -p ~/.local/lib/wireshark/plugins
--   cp tools/wireshark/vmrdma.lua ~/.local/lib/wireshark/plugins/
--
-- Display filter examples: vmrdma, vmrdma.opname == "NAK",
-- vmrdma.conn == 0x10003, vmrdma.flags.ackreq == 1, vmrdma.crc.status == "bad",
-- vmrdma.problem (any frame the dissector found wrong).
--
-- What it does: decodes every header field (opcode and NAK reason names, flag
-- bits), shows the payload as bytes, recomputes the CRC32C over the Ethernet
-- header + vmrdma header (CRC field as 0) + payload and reports
-- "crc: good/bad", and flags what the engine's parser (proto/wire.c,
-- vr_wire_parse) would reject as expert info: too short, bad version, payload
-- length mismatch, bad CRC, unknown opcode, unknown flag bits, reserved != 0,
-- bad NAK reason, ABORT on a non-data frame and the opcode/length rules.
--
-- BUNDLE frames (opcode 0x60, several whole frames in one, see
-- docs/wire-format.md "Bundles"): shows the bundle header and each entry
-- (its length, the inner Ethernet header, then the inner frame dissected
-- exactly like a lone frame, CRC included), and flags what vr_wire_bundle_next
-- would reject (count that disagrees with the entries, an entry too short or
-- overrunning the frame, reserved != 0, an inner Ethernet header that differs
-- from the outer one) and a bundle inside a bundle. Filters:
-- vmrdma.opname == "BUNDLE" (or vmrdma.bundle.count), vmrdma.bundle.entry;
-- a filter on a frame's field (vmrdma.opname == "ACK") also matches a bundle
-- that carries such a frame.
--
-- Written for Wireshark 4.0 (Lua 5.2, bit32), the version in Debian 12; it
-- also runs on later versions with Lua 5.3/5.4 (bit32 or native operators).

local ETH_HLEN = 14
local HDR_LEN = 72
local DEFAULT_ETHERTYPE = 0x88B5
local BUNDLE_HLEN = 8        -- version, opcode, count (be16), reserved (be32)
local BUNDLE_ENTRY_HLEN = 2  -- each entry: length (be16), then a whole frame
local OP_BUNDLE = 0x60

---------------------------------------------------------------------------
-- Bit operations: bit32 on Lua 5.2 (Wireshark <= 4.2); fall back to the
-- native operators (Lua 5.3+), compiled through load() so that this file
-- still parses on Lua 5.2.
local band, bxor, rshift
if bit32 then
    band, bxor, rshift = bit32.band, bit32.bxor, bit32.rshift
else
    band = load("return function(a, b) return a & b end")()
    bxor = load("return function(a, b) return (a ~ b) & 0xFFFFFFFF end")()
    rshift = load("return function(a, n) return (a & 0xFFFFFFFF) >> n end")()
end

---------------------------------------------------------------------------
-- CRC32C (Castagnoli, reflected polynomial 0x82F63B78), table driven.
local crc_table = {}
for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
        if band(c, 1) ~= 0 then
            c = bxor(rshift(c, 1), 0x82F63B78)
        else
            c = rshift(c, 1)
        end
    end
    crc_table[i] = c
end

-- Continues the CRC state `crc` over the Lua string s.
local function crc32c_update(crc, s)
    local byte = string.byte
    local n = #s
    local i = 1
    while i <= n do
        -- string.byte with a range returns many values at once: do 64 at a time.
        local j = math.min(i + 63, n)
        local bytes = { byte(s, i, j) }
        for k = 1, #bytes do
            crc = bxor(crc_table[band(bxor(crc, bytes[k]), 0xFF)], rshift(crc, 8))
        end
        i = j + 1
    end
    return crc
end

local function crc32c_final(crc)
    return bxor(crc, 0xFFFFFFFF)
end

---------------------------------------------------------------------------
-- Names.
local opcodes = {
    [0x01] = "WRITE_FIRST",
    [0x02] = "WRITE_MIDDLE",
    [0x03] = "WRITE_LAST",
    [0x04] = "WRITE_ONLY",
    [0x10] = "READ_REQ",
    [0x11] = "READ_RESP_FIRST",
    [0x12] = "READ_RESP_MIDDLE",
    [0x13] = "READ_RESP_LAST",
    [0x14] = "READ_RESP_ONLY",
    [0x20] = "SEND_FIRST",
    [0x21] = "SEND_MIDDLE",
    [0x22] = "SEND_LAST",
    [0x23] = "SEND_ONLY",
    [0x30] = "ATOMIC_FADD",
    [0x31] = "ATOMIC_CSWAP",
    [0x32] = "ATOMIC_RESP",
    [0x40] = "ACK",
    [0x41] = "NAK",
    [0x50] = "CONNECT_REQ",
    [0x51] = "CONNECT_ACK",
    [0x52] = "DISCONNECT",
    [0x53] = "RESOLVE",
    [0x54] = "ANNOUNCE",
    [0x55] = "CONNECT_RETRY",
}
-- Names shown for the opcode field: the frame opcodes above and BUNDLE, which
-- only ever starts a bundle (never a frame that vr_wire_parse accepts).
local opcode_names = { [OP_BUNDLE] = "BUNDLE" }
for op, name in pairs(opcodes) do opcode_names[op] = name end

local nak_reasons = {
    [0] = "NONE",
    [1] = "BAD_KEY",
    [2] = "BOUNDS",
    [3] = "ACCESS",
    [4] = "NO_EP",
    [5] = "RNR",
    [6] = "RESOURCES",
    [7] = "SEQ",
    [8] = "INVALID",
    [9] = "REJECTED",
    [10] = "TOO_LONG",
}
local NAK_MAX = 11

local F_ACKREQ = 0x01
local F_ABORT = 0x02
local F_LINK_FCS = 0x04 -- CRC over the headers only; the payload rests on the link's FCS
local F_AUTH = 0x08     -- a 24-byte auth block (nonce, tag) between header and payload
local F_ALL = 0x0F
local AUTH_LEN = 24

local OP_WRITE_FIRST, OP_WRITE_ONLY = 0x01, 0x04
local OP_READ_RESP_FIRST, OP_READ_RESP_ONLY = 0x11, 0x14
local OP_SEND_FIRST, OP_SEND_LAST, OP_SEND_ONLY = 0x20, 0x22, 0x23
local OP_READ_RESP_LAST = 0x13
local OP_ATOMIC_FADD, OP_ATOMIC_CSWAP = 0x30, 0x31
local OP_ACK, OP_NAK = 0x40, 0x41
local OP_CONNECT_REQ, OP_CONNECT_ACK = 0x50, 0x51
local OP_RESOLVE, OP_ANNOUNCE = 0x53, 0x54
local OP_CONNECT_RETRY = 0x55
local PRIVATE_DATA_MAX = 192 -- VR_PRIVATE_DATA_MAX: a handshake's private data
local NAME_MAX = 64          -- VR_NAME_MAX
local WIRE_VERSION = 3       -- VR_WIRE_VERSION

local function is_data(op) return opcodes[op] ~= nil and op < OP_ACK end

---------------------------------------------------------------------------
-- Protocol and fields.
local vmrdma = Proto("vmrdma", "vmrdma (RDMA over Ethernet)")

local f = {
    version = ProtoField.uint8("vmrdma.version", "Version", base.DEC),
    opcode = ProtoField.uint8("vmrdma.opcode", "Opcode", base.HEX, opcode_names),
    opname = ProtoField.string("vmrdma.opname", "Opcode name"),
    flags = ProtoField.uint8("vmrdma.flags", "Flags", base.HEX),
    flag_ackreq = ProtoField.uint8("vmrdma.flags.ackreq", "ACKREQ (last frame of a message)", base.DEC, nil, F_ACKREQ),
    flag_abort = ProtoField.uint8("vmrdma.flags.abort", "ABORT (frame of a cancelled message)", base.DEC, nil, F_ABORT),
    flag_link_fcs = ProtoField.uint8("vmrdma.flags.link_fcs", "LINK_FCS (CRC covers the headers, not the payload)", base.DEC, nil, F_LINK_FCS),
    flag_auth = ProtoField.uint8("vmrdma.flags.auth", "AUTH (an auth block: nonce and ChaCha20-Poly1305 tag)", base.DEC, nil, F_AUTH),
    flag_unknown = ProtoField.uint8("vmrdma.flags.unknown", "Unknown flag bits", base.HEX, nil, 0xF0),
    auth_nonce = ProtoField.uint64("vmrdma.auth.nonce", "Auth nonce (the sender's frame counter; bit 63: the accepting side)", base.HEX),
    auth_tag = ProtoField.bytes("vmrdma.auth.tag", "Auth tag (not checked: it needs the key)"),
    nak_reason = ProtoField.uint8("vmrdma.nak_reason", "NAK reason", base.DEC, nak_reasons),
    src_ep = ProtoField.uint16("vmrdma.src_ep", "Source endpoint", base.DEC),
    dst_ep = ProtoField.uint16("vmrdma.dst_ep", "Destination endpoint", base.DEC),
    conn = ProtoField.uint32("vmrdma.conn", "Connection id (receiver's)", base.HEX_DEC),
    conn_index = ProtoField.uint32("vmrdma.conn.index", "Index", base.DEC, nil, 0x0000FFFF),
    conn_gen = ProtoField.uint32("vmrdma.conn.generation", "Generation", base.DEC, nil, 0xFFFF0000),
    psn = ProtoField.uint32("vmrdma.psn", "PSN", base.DEC),
    ack_psn = ProtoField.uint32("vmrdma.ack_psn", "ACK PSN (next PSN expected)", base.DEC),
    msg_id = ProtoField.uint32("vmrdma.msg_id", "Message id", base.DEC),
    rkey = ProtoField.uint64("vmrdma.rkey", "Remote key", base.HEX),
    total_len = ProtoField.uint32("vmrdma.total_len", "Total message length", base.DEC),
    remote_off = ProtoField.uint64("vmrdma.remote_off", "Remote offset", base.DEC),
    operand_a = ProtoField.uint64("vmrdma.operand_a", "Operand A", base.HEX),
    operand_b = ProtoField.uint64("vmrdma.operand_b", "Operand B (swap value; the cookie in CONNECT_REQ/RETRY)",
                                  base.HEX),
    payload_len = ProtoField.uint16("vmrdma.payload_len", "Payload length", base.DEC),
    reserved = ProtoField.uint16("vmrdma.reserved", "Reserved", base.HEX),
    reserved2 = ProtoField.uint32("vmrdma.reserved2", "Reserved", base.HEX),
    crc = ProtoField.uint32("vmrdma.crc", "CRC32C", base.HEX),
    crc_calc = ProtoField.uint32("vmrdma.crc.computed", "Computed CRC32C", base.HEX),
    crc_status = ProtoField.string("vmrdma.crc.status", "CRC status"),
    payload = ProtoField.bytes("vmrdma.payload", "Payload"),
    problem = ProtoField.string("vmrdma.problem", "Problem"),
    bundle_count = ProtoField.uint16("vmrdma.bundle.count", "Bundle count", base.DEC),
    bundle_reserved = ProtoField.uint32("vmrdma.bundle.reserved", "Bundle reserved", base.HEX),
    bundle_entries = ProtoField.uint16("vmrdma.bundle.entries", "Entries found", base.DEC),
    entry = ProtoField.none("vmrdma.bundle.entry", "Bundle entry"),
    entry_len = ProtoField.uint16("vmrdma.bundle.entry.length", "Entry length", base.DEC),
    entry_eth_dst = ProtoField.ether("vmrdma.bundle.entry.eth.dst", "Inner destination MAC"),
    entry_eth_src = ProtoField.ether("vmrdma.bundle.entry.eth.src", "Inner source MAC"),
    entry_eth_type = ProtoField.uint16("vmrdma.bundle.entry.eth.type", "Inner EtherType", base.HEX),
    entry_data = ProtoField.bytes("vmrdma.bundle.entry.data", "Entry bytes (not dissected)"),
}
vmrdma.fields = f

local ef = {
    short = ProtoExpert.new("vmrdma.short", "Frame shorter than the 14 + 72 byte headers",
                            expert.group.MALFORMED, expert.severity.ERROR),
    version = ProtoExpert.new("vmrdma.bad_version", "Unsupported vmrdma version",
                              expert.group.MALFORMED, expert.severity.ERROR),
    opcode = ProtoExpert.new("vmrdma.unknown_opcode", "Unknown opcode",
                             expert.group.MALFORMED, expert.severity.ERROR),
    length = ProtoExpert.new("vmrdma.length_mismatch", "Payload length does not match the frame length",
                             expert.group.MALFORMED, expert.severity.ERROR),
    crc = ProtoExpert.new("vmrdma.crc.bad", "Bad CRC32C",
                          expert.group.CHECKSUM, expert.severity.ERROR),
    field = ProtoExpert.new("vmrdma.bad_field", "Invalid field (flags, reserved, NAK reason)",
                            expert.group.MALFORMED, expert.severity.ERROR),
    rules = ProtoExpert.new("vmrdma.bad_lengths", "Opcode/length rules violated",
                            expert.group.MALFORMED, expert.severity.ERROR),
    unverified = ProtoExpert.new("vmrdma.crc.unverified", "CRC not verified (truncated capture or no Ethernet header)",
                                 expert.group.CHECKSUM, expert.severity.NOTE),
    bundle_count = ProtoExpert.new("vmrdma.bundle.bad_count", "Bundle count is 0 or disagrees with its entries",
                                   expert.group.MALFORMED, expert.severity.ERROR),
    bundle_entry = ProtoExpert.new("vmrdma.bundle.bad_entry_length",
                                   "Bundle entry too short for a frame, or beyond the end of the bundle",
                                   expert.group.MALFORMED, expert.severity.ERROR),
    bundle_eth = ProtoExpert.new("vmrdma.bundle.eth_mismatch", "Inner Ethernet header differs from the bundle's",
                                 expert.group.MALFORMED, expert.severity.ERROR),
    bundle_nested = ProtoExpert.new("vmrdma.bundle.nested", "Bundle inside a bundle",
                                    expert.group.MALFORMED, expert.severity.ERROR),
    bundle_truncated = ProtoExpert.new("vmrdma.bundle.truncated", "Rest of the bundle not captured (snaplen)",
                                       expert.group.UNDECODED, expert.severity.NOTE),
}
vmrdma.experts = { ef.short, ef.version, ef.opcode, ef.length, ef.crc, ef.field, ef.rules, ef.unverified,
                   ef.bundle_count, ef.bundle_entry, ef.bundle_eth, ef.bundle_nested, ef.bundle_truncated }

-- Preferences (tshark: -o vmrdma.ethertype:34997 -o vmrdma.check_crc:FALSE).
vmrdma.prefs.ethertype = Pref.uint("EtherType (decimal)", DEFAULT_ETHERTYPE,
                                   "EtherType vmrdma runs on, in decimal: 34997 = 0x88B5 "
                                   .. "(vr_config.ethertype / device_options.ethertype)")
vmrdma.prefs.check_crc = Pref.bool("Verify CRC32C", true, "Recompute the CRC32C of every frame")

-- The 14 Ethernet header bytes are part of the CRC: read them back from the
-- Ethernet dissector's fields (the last ones, in case of encapsulation).
local eth_dst_f = Field.new("eth.dst")
local eth_src_f = Field.new("eth.src")

local function last(...)
    local t = { ... }
    return t[#t]
end

local registered_ethertype = nil
local function register_ethertype()
    local dt = DissectorTable.get("ethertype")
    if registered_ethertype then dt:remove(registered_ethertype, vmrdma) end
    registered_ethertype = vmrdma.prefs.ethertype
    dt:add(registered_ethertype, vmrdma)
end
function vmrdma.prefs_changed()
    if registered_ethertype ~= vmrdma.prefs.ethertype then register_ethertype() end
end

---------------------------------------------------------------------------
-- Mirror of check_semantics() in proto/wire.c. Returns an error text or nil.
local function semantics(h)
    local abort = band(h.flags, F_ABORT) ~= 0
    local op, pl = h.opcode, h.payload_len
    local off = h.remote_off          -- UInt64
    local total = UInt64(h.total_len)
    local pl64 = UInt64(pl)

    if h.nak >= NAK_MAX then return "field", "NAK reason " .. h.nak .. " is unknown" end
    if h.nak ~= 0 and op ~= OP_NAK and
       not (abort and op >= OP_READ_RESP_FIRST and op <= OP_READ_RESP_ONLY) then
        return "field", "NAK reason set on a frame that is neither NAK nor an aborted READ_RESP"
    end
    if op == OP_NAK and h.nak == 0 then return "field", "NAK without a reason" end
    if abort and not is_data(op) then return "field", "ABORT flag on a non-data frame" end
    if band(h.flags, F_LINK_FCS) ~= 0 and pl == 0 then
        return "field", "LINK_FCS flag on a frame without payload"
    end
    if band(h.flags, F_LINK_FCS) ~= 0 and not is_data(op) then
        return "field", "LINK_FCS flag on a control frame (private data and names are always checked)"
    end
    if band(h.flags, F_AUTH) ~= 0 and (band(h.flags, F_LINK_FCS) ~= 0 or op == OP_RESOLVE or
                                        op == OP_ANNOUNCE or op == OP_CONNECT_RETRY) then
        return "field", "AUTH flag with LINK_FCS or on a connectionless frame"
    end

    if op >= OP_WRITE_FIRST and op <= OP_WRITE_ONLY then
        if pl > h.total_len or (abort and pl ~= 0) then
            return "rules", "payload longer than the message, or ABORT with payload"
        end
        if op == OP_WRITE_ONLY and not abort and pl ~= h.total_len then
            return "rules", "WRITE_ONLY does not carry the whole message"
        end
        if off > UInt64.max() - pl64 then return "rules", "remote offset + length wraps" end
    elseif (op >= OP_SEND_FIRST and op <= OP_SEND_ONLY) or
           (op >= OP_READ_RESP_FIRST and op <= OP_READ_RESP_ONLY) then
        if abort and pl ~= 0 then return "rules", "ABORT frame with payload" end
        if off > total or pl64 > total - off then
            return "rules", "offset + payload beyond the message length"
        end
        local first_or_only = op == OP_SEND_FIRST or op == OP_SEND_ONLY or
                              op == OP_READ_RESP_FIRST or op == OP_READ_RESP_ONLY
        if first_or_only and off ~= UInt64(0) then
            return "rules", "FIRST/ONLY frame does not start at offset 0"
        end
        if (op == OP_SEND_ONLY or op == OP_READ_RESP_ONLY) and not abort and pl ~= h.total_len then
            return "rules", "ONLY frame does not carry the whole message"
        end
        if (op == OP_SEND_LAST or op == OP_READ_RESP_LAST) and not abort and off + pl64 ~= total then
            return "rules", "LAST frame does not end at the message length"
        end
    elseif op == OP_ATOMIC_FADD or op == OP_ATOMIC_CSWAP then
        if pl ~= 0 or h.total_len ~= 8 then return "rules", "atomic with payload or total length != 8" end
    elseif op == OP_CONNECT_REQ or op == OP_CONNECT_ACK then
        if pl > PRIVATE_DATA_MAX then
            return "rules", string.format("private data of %d bytes (at most %d)", pl, PRIVATE_DATA_MAX)
        end
    elseif op == OP_RESOLVE or op == OP_ANNOUNCE then
        if pl == 0 or pl > NAME_MAX then
            return "rules", string.format("name of %d bytes (1..%d)", pl, NAME_MAX)
        end
        if op == OP_RESOLVE and (h.dst_ep ~= 0 or h.conn ~= 0) then
            return "field", "RESOLVE with a destination endpoint or connection"
        end
    elseif pl ~= 0 then
        return "rules", "control frame with payload"
    end
    return nil
end

---------------------------------------------------------------------------
-- One frame, lone or inside a bundle. tvb starts at the vmrdma header; eth is
-- the 14-byte Ethernet header its CRC covers (a string; nil when unknown,
-- which leaves the CRC unverified). Adds the frame's vmrdma subtree to tree
-- and returns a summary: info (for the Info column), opname, crc (the CRC
-- status, nil when not reached) and problems (the texts of what is wrong).
local function dissect_frame(tvb, tree, eth)
    local len = tvb:reported_len()
    local root = tree:add(vmrdma, tvb(0, math.min(len, tvb:len())))

    local problems = {}
    local function problem(item, expert_field, text)
        item:add_proto_expert_info(expert_field, text)
        root:add(f.problem, text):set_generated()
        problems[#problems + 1] = text
    end

    if len < HDR_LEN then
        problem(root, ef.short, string.format("Frame too short: %d bytes of vmrdma header, need %d",
                                              len, HDR_LEN))
        return { info = "[malformed: too short]", opname = "?", problems = problems }
    end

    local h = {
        version = tvb(0, 1):uint(),
        opcode = tvb(1, 1):uint(),
        flags = tvb(2, 1):uint(),
        nak = tvb(3, 1):uint(),
        src_ep = tvb(4, 2):uint(),
        dst_ep = tvb(6, 2):uint(),
        conn = tvb(8, 4):uint(),
        psn = tvb(12, 4):uint(),
        ack_psn = tvb(16, 4):uint(),
        msg_id = tvb(20, 4):uint(),
        rkey = tvb(24, 8):uint64(),
        total_len = tvb(32, 4):uint(),
        payload_len = tvb(36, 2):uint(),
        reserved = tvb(38, 2):uint(),
        remote_off = tvb(40, 8):uint64(),
        reserved2 = tvb(64, 4):uint(),
        crc = tvb(68, 4):uint(),
    }
    local opname = opcodes[h.opcode]

    local vi = root:add(f.version, tvb(0, 1))
    local oi = root:add(f.opcode, tvb(1, 1))
    root:add(f.opname, tvb(1, 1), opname or string.format("UNKNOWN(0x%02x)", h.opcode)):set_generated()
    local fi = root:add(f.flags, tvb(2, 1))
    local flag_names = {}
    if band(h.flags, F_ACKREQ) ~= 0 then flag_names[#flag_names + 1] = "ACKREQ" end
    if band(h.flags, F_ABORT) ~= 0 then flag_names[#flag_names + 1] = "ABORT" end
    if band(h.flags, F_LINK_FCS) ~= 0 then flag_names[#flag_names + 1] = "LINK_FCS" end
    if band(h.flags, F_AUTH) ~= 0 then flag_names[#flag_names + 1] = "AUTH" end
    if #flag_names > 0 then fi:append_text(" (" .. table.concat(flag_names, ", ") .. ")") end
    fi:add(f.flag_ackreq, tvb(2, 1))
    fi:add(f.flag_abort, tvb(2, 1))
    fi:add(f.flag_link_fcs, tvb(2, 1))
    fi:add(f.flag_auth, tvb(2, 1))
    fi:add(f.flag_unknown, tvb(2, 1))
    local ni = root:add(f.nak_reason, tvb(3, 1))
    root:add(f.src_ep, tvb(4, 2))
    root:add(f.dst_ep, tvb(6, 2))
    local ci = root:add(f.conn, tvb(8, 4))
    ci:add(f.conn_index, tvb(8, 4))
    ci:add(f.conn_gen, tvb(8, 4))
    root:add(f.psn, tvb(12, 4))
    root:add(f.ack_psn, tvb(16, 4))
    root:add(f.msg_id, tvb(20, 4))
    root:add(f.rkey, tvb(24, 8))
    root:add(f.total_len, tvb(32, 4))
    local pi = root:add(f.payload_len, tvb(36, 2))
    local ri = root:add(f.reserved, tvb(38, 2))
    root:add(f.remote_off, tvb(40, 8))
    root:add(f.operand_a, tvb(48, 8))
    root:add(f.operand_b, tvb(56, 8))
    local ri2 = root:add(f.reserved2, tvb(64, 4))
    local crci = root:add(f.crc, tvb(68, 4))

    -- An authenticated frame's auth block comes between header and payload.
    local hl = HDR_LEN
    if band(h.flags, F_AUTH) ~= 0 and len >= HDR_LEN + AUTH_LEN and tvb:len() >= HDR_LEN + AUTH_LEN then
        hl = HDR_LEN + AUTH_LEN
        root:add(f.auth_nonce, tvb(HDR_LEN, 8))
        root:add(f.auth_tag, tvb(HDR_LEN + 8, 16))
    end
    local actual_pl = len - hl
    if actual_pl > 0 then
        root:add(f.payload, tvb(hl, math.min(actual_pl, tvb:len() - hl)))
    end

    -- Same order of checks as vr_wire_parse.
    local crc_text = "unverified"
    local crc_reached = false
    if h.version ~= WIRE_VERSION then
        problem(vi, ef.version, "Version " .. h.version .. " is not " .. WIRE_VERSION)
    elseif h.payload_len ~= actual_pl then
        problem(pi, ef.length, string.format("Payload length %d, but the frame carries %d bytes",
                                             h.payload_len, actual_pl))
    else
        crc_reached = true
        if not vmrdma.prefs.check_crc then
            crc_text = "not checked"
        elseif tvb:len() < len or not eth then
            crci:add_proto_expert_info(ef.unverified)
        else
            local st = crc32c_update(0xFFFFFFFF, eth)
            st = crc32c_update(st, tvb:raw(0, 68))
            st = crc32c_update(st, "\0\0\0\0")
            if hl > HDR_LEN then
                st = crc32c_update(st, tvb:raw(HDR_LEN, AUTH_LEN)) -- the tag covers the payload
            elseif actual_pl > 0 and band(h.flags, F_LINK_FCS) == 0 then
                st = crc32c_update(st, tvb:raw(HDR_LEN, actual_pl))
            end
            local computed = crc32c_final(st)
            root:add(f.crc_calc, tvb(68, 4), computed):set_generated()
            if computed == h.crc then
                crc_text = "good"
            else
                crc_text = "bad"
                problem(crci, ef.crc, string.format("Bad CRC32C: frame has 0x%08x, computed 0x%08x",
                                                    h.crc, computed))
            end
        end
        crci:append_text(" [" .. crc_text .. "]")
        root:add(f.crc_status, tvb(68, 4), crc_text):set_generated()

        if not opname then
            problem(oi, ef.opcode, string.format("Unknown opcode 0x%02x", h.opcode))
        elseif band(h.flags, 0xFF - F_ALL) ~= 0 then
            problem(fi, ef.field, string.format("Unknown flag bits 0x%02x", band(h.flags, 0xFF - F_ALL)))
        elseif h.reserved ~= 0 then
            problem(ri, ef.field, string.format("Reserved field is 0x%04x, must be 0", h.reserved))
        elseif h.reserved2 ~= 0 then
            problem(ri2, ef.field, string.format("Reserved field is 0x%08x, must be 0", h.reserved2))
        else
            local kind, text = semantics(h)
            if kind == "field" then
                problem(ni, ef.field, text)
            elseif kind == "rules" then
                problem(root, ef.rules, text)
            end
        end
    end

    -- Info column, e.g. "WRITE_FIRST ep 1→1 conn 3 psn 17 len 1436".
    local info = string.format("%s ep %d→%d conn %d psn %d", opname or string.format("OP_0x%02x", h.opcode),
                               h.src_ep, h.dst_ep, h.conn, h.psn)
    if h.opcode == OP_ACK or h.opcode == OP_NAK or h.opcode == OP_CONNECT_RETRY or h.opcode == OP_CONNECT_ACK then
        info = info .. " ack " .. h.ack_psn
    end
    if h.opcode == OP_CONNECT_REQ or h.opcode == OP_CONNECT_RETRY then
        info = info .. " cookie 0x" .. tvb(56, 8):uint64():tohex()
    end
    if h.opcode == OP_NAK or h.nak ~= 0 then
        info = info .. " reason " .. (nak_reasons[h.nak] or tostring(h.nak))
    end
    info = info .. " len " .. h.payload_len
    if #flag_names > 0 then info = info .. " [" .. table.concat(flag_names, ",") .. "]" end
    if crc_text == "bad" then info = info .. " [CRC BAD]" end
    if #problems > 0 then info = info .. " [malformed: " .. problems[1] .. "]" end

    root:append_text(string.format(", %s, ep %d→%d, conn %d, psn %d, crc: %s",
                                   opname or "unknown opcode", h.src_ep, h.dst_ep, h.conn, h.psn, crc_text))
    return { info = info, opname = opname or string.format("OP_0x%02x", h.opcode),
             crc = crc_reached and crc_text or nil, problems = problems }
end

-- "A, A, A, B" -> "A ×3, B"
local function runs(names)
    local parts = {}
    local i = 1
    while i <= #names do
        local j = i
        while j < #names and names[j + 1] == names[i] do j = j + 1 end
        parts[#parts + 1] = j > i and string.format("%s ×%d", names[i], j - i + 1) or names[i]
        i = j + 1
    end
    return table.concat(parts, ", ")
end

---------------------------------------------------------------------------
-- A bundle (see VR_BUNDLE_HLEN in proto/wire.h): tvb starts at the bundle
-- header, eth is the outer Ethernet header (nil when unknown). The checks of
-- vr_wire_bundle_next come first (the engine drops a bundle that fails one
-- of them whole); each inner frame is then dissected as a lone one, and the
-- engine would drop only that frame if it were bad.
local function dissect_bundle(tvb, pinfo, tree, eth)
    local len = tvb:reported_len()
    local cap = tvb:len()
    local root = tree:add(vmrdma, tvb(0, math.min(len, cap)))

    local problems = {}
    local function problem(item, expert_field, text)
        item:add_proto_expert_info(expert_field, text)
        root:add(f.problem, text):set_generated()
        problems[#problems + 1] = text
    end
    local function malformed(info)
        if #problems > 0 then info = info .. " [malformed: " .. problems[1] .. "]" end
        pinfo.cols.info:set(info)
    end

    if len < BUNDLE_HLEN or cap < BUNDLE_HLEN then
        if len < BUNDLE_HLEN then
            problem(root, ef.short, string.format("Bundle too short: %d bytes of bundle header, need %d",
                                                  len, BUNDLE_HLEN))
        else
            root:add_proto_expert_info(ef.bundle_truncated)
        end
        root:append_text(", BUNDLE")
        malformed("BUNDLE")
        return
    end

    local version, count, reserved = tvb(0, 1):uint(), tvb(2, 2):uint(), tvb(4, 4):uint()
    local vi = root:add(f.version, tvb(0, 1))
    root:add(f.opcode, tvb(1, 1))
    root:add(f.opname, tvb(1, 1), "BUNDLE"):set_generated()
    local ci = root:add(f.bundle_count, tvb(2, 2))
    local ri = root:add(f.bundle_reserved, tvb(4, 4))
    if version ~= WIRE_VERSION then
        -- Another version may lay its bundles out differently: stop here.
        problem(vi, ef.version, "Version " .. version .. " is not " .. WIRE_VERSION)
        root:append_text(", BUNDLE, version " .. version)
        malformed("BUNDLE")
        return
    end
    if reserved ~= 0 then
        problem(ri, ef.field, string.format("Bundle reserved field is 0x%08x, must be 0", reserved))
    end
    if count == 0 then problem(ci, ef.bundle_count, "Bundle count is 0") end

    local names = {}          -- opcode name of each entry, for the Info column
    local crc_bad = false
    local inner_problem = nil -- the first inner frame's problem
    local entries = 0
    local to_the_end = true   -- false when the entries could not be followed to the end
    local at = BUNDLE_HLEN
    while at < len do
        if cap < at + math.min(len - at, BUNDLE_ENTRY_HLEN) then
            root:add_proto_expert_info(ef.bundle_truncated)
            to_the_end = false
            break
        end
        if len - at < BUNDLE_ENTRY_HLEN then
            problem(root:add(f.entry_data, tvb(at, len - at)), ef.bundle_entry,
                    string.format("%d byte after the last entry, too few for an entry length", len - at))
            to_the_end = false
            break
        end
        entries = entries + 1
        local n = tvb(at, 2):uint()
        local body = at + BUNDLE_ENTRY_HLEN
        local room = len - body
        local ei = root:add(f.entry, tvb(at, math.min(BUNDLE_ENTRY_HLEN + math.min(n, room), cap - at)))
        ei:set_text(string.format("Entry %d: %d bytes", entries, n))
        local li = ei:add(f.entry_len, tvb(at, 2))
        if n > room then
            if room > 0 and cap > body then ei:add(f.entry_data, tvb(body, math.min(room, cap - body))) end
            problem(li, ef.bundle_entry,
                    string.format("Entry %d: length %d runs past the end of the bundle (%d bytes left)",
                                  entries, n, room))
            names[#names + 1] = "?"
            to_the_end = false
            break
        end
        if cap < body + n then
            ei:add_proto_expert_info(ef.bundle_truncated)
            to_the_end = false
            break
        end
        at = body + n
        if n < ETH_HLEN + HDR_LEN then
            if n > 0 then ei:add(f.entry_data, tvb(body, n)) end
            problem(li, ef.bundle_entry,
                    string.format("Entry %d: length %d is too short for a frame (at least %d)",
                                  entries, n, ETH_HLEN + HDR_LEN))
            names[#names + 1] = "?"
        else
            ei:add(f.entry_eth_dst, tvb(body, 6))
            ei:add(f.entry_eth_src, tvb(body + 6, 6))
            ei:add(f.entry_eth_type, tvb(body + 12, 2))
            local inner_eth = tvb:raw(body, ETH_HLEN)
            if eth and inner_eth ~= eth then
                problem(ei, ef.bundle_eth, string.format("Entry %d: its Ethernet header differs from the bundle's",
                                                         entries))
            end
            if tvb(body + ETH_HLEN + 1, 1):uint() == OP_BUNDLE then
                ei:add(f.entry_data, tvb(body + ETH_HLEN, n - ETH_HLEN))
                problem(ei, ef.bundle_nested, string.format("Entry %d is a bundle inside a bundle", entries))
                names[#names + 1] = "BUNDLE"
                ei:append_text(", BUNDLE")
            else
                local r = dissect_frame(tvb(body + ETH_HLEN, n - ETH_HLEN):tvb(), ei, inner_eth)
                names[#names + 1] = r.opname
                ei:append_text(", " .. r.opname .. (r.crc and (", crc: " .. r.crc) or ""))
                if r.crc == "bad" then crc_bad = true end
                if r.problems[1] and not inner_problem then
                    inner_problem = string.format("entry %d: %s", entries, r.problems[1])
                end
            end
        end
    end
    if to_the_end and count ~= 0 and entries ~= count then
        problem(ci, ef.bundle_count, string.format("Bundle count %d, but it holds %d entries", count, entries))
    end
    root:add(f.bundle_entries, entries):set_generated()

    -- Info column, e.g. "BUNDLE of 8: WRITE_ONLY ×7, ACK".
    local info = string.format("BUNDLE of %d", entries)
    if #names > 0 then info = info .. ": " .. runs(names) end
    if crc_bad then info = info .. " [CRC BAD]" end
    if inner_problem and #problems == 0 then problems[1] = inner_problem end
    malformed(info)
    root:append_text(string.format(", BUNDLE of %d frames", entries))
end

---------------------------------------------------------------------------
-- The outer Ethernet header as the CRC covers it (nil when unknown): read back
-- from the Ethernet dissector's fields (the last ones, in case of
-- encapsulation), with the configured EtherType.
local function outer_eth()
    local dst = last(eth_dst_f())
    local src = last(eth_src_f())
    if not dst or not src then return nil end
    return dst.range:raw() .. src.range:raw() ..
           string.char(rshift(vmrdma.prefs.ethertype, 8) % 256, vmrdma.prefs.ethertype % 256)
end

function vmrdma.dissector(tvb, pinfo, tree)
    pinfo.cols.protocol:set("vmrdma")
    if tvb:len() >= 2 and tvb(1, 1):uint() == OP_BUNDLE then
        dissect_bundle(tvb, pinfo, tree, outer_eth())
    else
        pinfo.cols.info:set(dissect_frame(tvb, tree, outer_eth()).info)
    end
    return tvb:len()
end

register_ethertype()
