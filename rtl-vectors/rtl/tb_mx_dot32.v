// Testbench for mx_dot32: reads a `mxsim vectors` dot pack's `.hex` file with $readmemh (one
// vector per line: a0..a31, sa0, b0..b31, sb0, c, d; fields joined with `_`, the first field
// most significant), drives each vector, and writes the unit's d for every vector, one
// 8-digit hex word per line, to the dump that `mxsim vectors check` compares.
//
// Plusargs: +vectors=<pack>/dot.hex +out=<dump.hex> +n=<vector count>
// Parameters: FP4 (0: MXFP8 E4M3 pack, 1: MXFP4 pack), TRUNCATE (1: the broken unit).
`timescale 1ns / 1ps
module tb_mx_dot32;
    parameter FP4 = 0;
    parameter TRUNCATE = 0;
    localparam K    = 32;
    localparam EW   = FP4 ? 4 : 8;            // bits per element field (one or two hex digits)
    localparam LW   = 2 * K * EW + 16 + 64;   // bits per line
    localparam MAXN = 65536;

    reg [LW-1:0] mem[0:MAXN-1];
    reg [LW-1:0] v;
    reg [255:0] a, b;
    reg [7:0] sa, sb;
    reg [31:0] c;
    wire [31:0] d;
    reg [8*512-1:0] vec_file, out_file;
    integer i, j, n, fd, mism;

    mx_dot32 #(.TRUNCATE(TRUNCATE)) dut (
        .fmt_fp4(FP4 != 0), .a(a), .b(b), .sa(sa), .sb(sb), .c(c), .d(d)
    );

    initial begin
        if (!$value$plusargs("vectors=%s", vec_file) || !$value$plusargs("out=%s", out_file)
            || !$value$plusargs("n=%d", n)) begin
            $display("usage: +vectors=<dot.hex> +out=<dump.hex> +n=<count>");
            $finish;
        end
        if (n < 1 || n > MAXN) begin
            $display("vector count %0d out of range 1..%0d", n, MAXN);
            $finish;
        end
        $readmemh(vec_file, mem, 0, n - 1);
        fd = $fopen(out_file, "w");
        mism = 0;
        for (i = 0; i < n; i = i + 1) begin
            v = mem[i];
            a = 256'd0;
            b = 256'd0;
            for (j = 0; j < K; j = j + 1) begin
                a[8*j +: 8] = v[LW - 1 - j * EW -: EW];
                b[8*j +: 8] = v[LW - 1 - K * EW - 8 - j * EW -: EW];
            end
            sa = v[LW - 1 - K * EW -: 8];
            sb = v[LW - 1 - 2 * K * EW - 8 -: 8];
            c  = v[63:32];
            #1;
            if (d !== v[31:0]) mism = mism + 1;
            $fdisplay(fd, "%h", d);
        end
        $fclose(fd);
        $display("tb_mx_dot32: %0d vectors run, %0d differ from the golden d (the checker reports them)", n, mism);
        $finish;
    end
endmodule
