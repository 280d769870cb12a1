// mx_dot32: one MX block dot product with an FP32 accumulator, bit-exact to the mxsim
// datapath preset `ocp-fp32` (OCP MX v1.0 section 6.2 read literally):
//
//   d = fp32_rne( c + fp32_rne( 2^(sa-127) * 2^(sb-127) * sum_{i<32} a_i * b_i ) )
//
// - elements: MXFP8 E4M3 (fmt_fp4 = 0) or MXFP4 E2M1 (fmt_fp4 = 1, low nibble of each byte);
//   32 elements per operand, one E8M0 scale per operand;
// - the block sum is exact (each element is an integer number of 2^-9, each product of
//   2^-18, the sum fits 43 bits), scaled by adding the scale exponents, rounded once to FP32
//   (round to nearest even, IEEE subnormals, overflow to Inf), then added to c with one more
//   FP32 RNE rounding (the exact sum of two FP32 values, rounded once);
// - NaN rules: an E4M3 NaN element (S.1111.111), a NaN scale (0xFF) or a NaN c gives the
//   canonical quiet NaN 0x7FC00000; an infinite c passes through; an overflowing block sum is
//   Inf and stays Inf;
// - signed zeros (IEEE): the block sum of zero products keeps their common sign (+0 when they
//   differ or any product is nonzero); -0 + -0 = -0; an exact cancellation gives +0.
//
// Parameter TRUNCATE = 1 builds a deliberately broken unit that truncates (rounds toward zero)
// instead of rounding to nearest even; the golden vectors must catch it.
//
// Purely combinational, Verilog-2005, synthesizable (loops have constant bounds).
`timescale 1ns / 1ps
module mx_dot32 #(
    parameter TRUNCATE = 0
) (
    input  wire         fmt_fp4,  // 0: E4M3 elements, 1: E2M1 elements
    input  wire [255:0] a,        // element i in a[8*i +: 8]
    input  wire [255:0] b,        // element i in b[8*i +: 8]
    input  wire [7:0]   sa,       // E8M0 scale of a
    input  wire [7:0]   sb,       // E8M0 scale of b
    input  wire [31:0]  c,        // FP32 accumulator
    output reg  [31:0]  d         // FP32 result
);
    localparam W = 320;  // fixed-point width: FP32 spans 2^-149 .. 2^128 (277 bits) plus carry
    localparam [W-1:0] ONE = {{(W-1){1'b0}}, 1'b1};

    // decode one element: {nan, neg, mag[17:0]} with value (-1)^neg * mag * 2^-9
    function [19:0] dec;
        input [7:0] code;
        input       fp4;
        reg   [17:0] m;
        begin
            dec = 20'd0;
            m   = 18'd0;
            if (!fp4) begin
                dec[18] = code[7];
                if (code[6:0] == 7'h7F) dec[19] = 1'b1;
                else if (code[6:3] == 4'd0) m = {15'd0, code[2:0]};
                else m = {14'd0, 1'b1, code[2:0]} << (code[6:3] - 4'd1);
            end else begin
                dec[18] = code[3];
                if (code[2:1] == 2'd0) m = {17'd0, code[0]} << 8;
                else m = {16'd0, 1'b1, code[0]} << ({2'b00, code[2:1]} + 4'd7);
            end
            dec[17:0] = m;
        end
    endfunction

    // round (-1)^neg * mag * 2^lsb to FP32: RNE with overflow to Inf, or (trunc) toward zero
    // with overflow to the largest finite value
    function [31:0] round_f32;
        input          neg;
        input [W-1:0]  mag;
        input integer  lsb;
        input          trunc;
        integer p, i, e, q, r, be;
        reg [W-1:0] sh;
        reg [24:0]  sig;
        reg         guard, sticky;
        begin
            p = -1;
            for (i = 0; i < W; i = i + 1)
                if (mag[i]) p = i;
            if (p < 0) begin
                round_f32 = {neg, 31'd0};
            end else begin
                e = lsb + p;
                q = ((e > -126) ? e : -126) - 23;  // exponent of the result's last bit
                guard  = 1'b0;
                sticky = 1'b0;
                if (q <= lsb) begin
                    sh  = mag << (lsb - q);
                    sig = sh[24:0];
                end else begin
                    r  = q - lsb;
                    sh = mag >> r;
                    sig = sh[24:0];
                    guard  = mag[r-1];
                    sticky = |(mag & ((ONE << (r - 1)) - ONE));
                end
                if (!trunc && guard && (sticky || sig[0])) sig = sig + 25'd1;
                if (sig[24]) begin  // rounding carried into the next binade
                    sig = sig >> 1;
                    q   = q + 1;
                end
                be = sig[23] ? q + 23 + 127 : 0;
                if (be >= 255)
                    round_f32 = trunc ? {neg, 8'hFE, 23'h7FFFFF} : {neg, 8'hFF, 23'd0};
                else
                    round_f32 = {neg, be[7:0], sig[22:0]};
            end
        end
    endfunction

    // an FP32 value as fixed point: {neg, mag} with value (-1)^neg * mag * 2^-149
    function [W:0] fix;
        input [31:0] x;
        reg [W-1:0] m;
        begin
            m = {{(W-24){1'b0}}, (x[30:23] != 8'd0), x[22:0]};
            if (x[30:23] > 8'd1) m = m << (x[30:23] - 8'd1);
            fix = {x[31], m};
        end
    endfunction

    integer i;
    reg [19:0] ea, eb;
    reg [35:0] p;
    reg signed [44:0] s;
    reg any_nan, any_nonzero, any_negzero, any_poszero;
    reg [31:0] blk;
    reg [W:0] fx, fy;
    reg [W-1:0] m;
    reg n;
    always @* begin
        s = 45'sd0;
        any_nan = (sa == 8'hFF) || (sb == 8'hFF) || (c[30:23] == 8'hFF && c[22:0] != 23'd0);
        any_nonzero = 1'b0;
        any_negzero = 1'b0;
        any_poszero = 1'b0;
        for (i = 0; i < 32; i = i + 1) begin
            ea = dec(a[8*i +: 8], fmt_fp4);
            eb = dec(b[8*i +: 8], fmt_fp4);
            any_nan = any_nan | ea[19] | eb[19];
            p = ea[17:0] * eb[17:0];
            if (p == 36'd0) begin
                if (ea[18] ^ eb[18]) any_negzero = 1'b1;
                else any_poszero = 1'b1;
            end else begin
                any_nonzero = 1'b1;
                if (ea[18] ^ eb[18]) s = s - $signed({9'd0, p});
                else s = s + $signed({9'd0, p});
            end
        end
        // block dot: s * 2^(sa + sb - 272) rounded to FP32
        if (s == 0) begin
            blk = {(!any_nonzero) & any_negzero & !any_poszero, 31'd0};
        end else begin
            m = (s < 0) ? -s : s;
            blk = round_f32(s < 0, m, sa + sb - 272, TRUNCATE);
        end
        if (any_nan) begin
            d = 32'h7FC00000;
        end else if (c[30:23] == 8'hFF) begin
            d = c;  // infinite accumulator
        end else if (blk[30:23] == 8'hFF) begin
            d = blk;  // overflowed block sum
        end else begin
            fx = fix(blk);
            fy = fix(c);
            if (fx[W] == fy[W]) begin
                m = fx[W-1:0] + fy[W-1:0];
                n = fx[W];
            end else if (fx[W-1:0] >= fy[W-1:0]) begin
                m = fx[W-1:0] - fy[W-1:0];
                n = fx[W];
            end else begin
                m = fy[W-1:0] - fx[W-1:0];
                n = fy[W];
            end
            if (m == 0) n = fx[W] & fy[W];  // exact zero: -0 only for -0 + -0
            d = round_f32(n, m, -149, TRUNCATE);
        end
    end
endmodule
