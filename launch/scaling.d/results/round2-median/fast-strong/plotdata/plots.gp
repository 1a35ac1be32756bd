set terminal pngcairo size 900,650 font 'sans,11'
set logscale x 2
set xrange [0.8:160.0]
set xtics ('1' 1, '128' 128)
set mxtics 1
set xlabel 'MPI ranks'
set grid
set key below
set datafile missing 'nan'
set output '/work/main/launch/scaling.d/results/round2-median/fast-strong/throughput.png'
set logscale y 10
set yrange [50000:10000000]
set ytics ('50k' 50000, '100k' 100000, '200k' 200000, '500k' 500000, '1M' 1000000, '2M' 2000000, '5M' 5000000, '10M' 10000000)
set mytics 1
set ylabel 'samples/s (median of repeats; bars: min..max)'
set title "dtrain throughput vs ranks"
plot '/work/main/launch/scaling.d/results/round2-median/fast-strong/plotdata/smpi-fast-strong-comm.update=replicated.dat' using 1:2:6:7 with yerrorlines lc rgb '#1f77b4' lw 2 pt 7 title 'strong scaling, SMPI, 16x8 fast network, comm.update=replicated' noenhanced, \
     '/work/main/launch/scaling.d/results/round2-median/fast-strong/plotdata/smpi-fast-strong-comm.update=replicated.dat' using 1:4 with lines lc rgb '#1f77b4' dt 2 lw 1 title 'ideal (1-rank x P), dashed', \
     '/work/main/launch/scaling.d/results/round2-median/fast-strong/plotdata/smpi-fast-strong-comm.update=sharded.dat' using 1:2:6:7 with yerrorlines lc rgb '#d62728' lw 2 pt 7 title 'strong scaling, SMPI, 16x8 fast network, comm.update=sharded' noenhanced, \
     '/work/main/launch/scaling.d/results/round2-median/fast-strong/plotdata/smpi-fast-strong-comm.update=sharded.dat' using 1:4 with lines lc rgb '#d62728' dt 2 lw 1 title ''
set output '/work/main/launch/scaling.d/results/round2-median/fast-strong/efficiency.png'
unset logscale y
set yrange [0:1.15]
set ytics 0.1 format '%.1f'
set mytics 1
set ylabel 'parallel efficiency = speedup / ranks'
set title "dtrain scaling efficiency vs 1 rank"
plot 1 with lines lc rgb 'black' dt 2 title 'ideal', \
     '/work/main/launch/scaling.d/results/round2-median/fast-strong/plotdata/smpi-fast-strong-comm.update=replicated.dat' using 1:3 with linespoints lc rgb '#1f77b4' lw 2 pt 7 title 'strong scaling, SMPI, 16x8 fast network, comm.update=replicated' noenhanced, \
     '/work/main/launch/scaling.d/results/round2-median/fast-strong/plotdata/smpi-fast-strong-comm.update=sharded.dat' using 1:3 with linespoints lc rgb '#d62728' lw 2 pt 7 title 'strong scaling, SMPI, 16x8 fast network, comm.update=sharded' noenhanced
reset
set terminal pngcairo size 900,600 font 'sans,11'
set output '/work/main/launch/scaling.d/results/round2-median/fast-strong/split-smpi-fast-strong-comm.update=replicated.png'
set style data histograms
set style histogram rowstacked
set style fill solid 0.85 border -1
set boxwidth 0.7
set grid ytics
set key outside right
set xlabel 'MPI ranks (* = oversubscribed)'
set ylabel 'ms per update (rank 0)'
set yrange [0:*]
set title "Time per update by phase: strong scaling, SMPI, 16x8 fast network, comm.update=replicated"
plot '/work/main/launch/scaling.d/results/round2-median/fast-strong/plotdata/smpi-fast-strong-comm.update=replicated.dat' using 8:xtic(stringcolumn(1).(column(5)==1?'*':'')) lc rgb '#7f7f7f' title 'data', '/work/main/launch/scaling.d/results/round2-median/fast-strong/plotdata/smpi-fast-strong-comm.update=replicated.dat' using 9:xtic(stringcolumn(1).(column(5)==1?'*':'')) lc rgb '#1f77b4' title 'forward', '/work/main/launch/scaling.d/results/round2-median/fast-strong/plotdata/smpi-fast-strong-comm.update=replicated.dat' using 10:xtic(stringcolumn(1).(column(5)==1?'*':'')) lc rgb '#2ca02c' title 'backward', '/work/main/launch/scaling.d/results/round2-median/fast-strong/plotdata/smpi-fast-strong-comm.update=replicated.dat' using 11:xtic(stringcolumn(1).(column(5)==1?'*':'')) lc rgb '#d62728' title 'communication', '/work/main/launch/scaling.d/results/round2-median/fast-strong/plotdata/smpi-fast-strong-comm.update=replicated.dat' using 12:xtic(stringcolumn(1).(column(5)==1?'*':'')) lc rgb '#ff7f0e' title 'optimizer'
reset
set terminal pngcairo size 900,600 font 'sans,11'
set output '/work/main/launch/scaling.d/results/round2-median/fast-strong/split-smpi-fast-strong-comm.update=sharded.png'
set style data histograms
set style histogram rowstacked
set style fill solid 0.85 border -1
set boxwidth 0.7
set grid ytics
set key outside right
set xlabel 'MPI ranks (* = oversubscribed)'
set ylabel 'ms per update (rank 0)'
set yrange [0:*]
set title "Time per update by phase: strong scaling, SMPI, 16x8 fast network, comm.update=sharded"
plot '/work/main/launch/scaling.d/results/round2-median/fast-strong/plotdata/smpi-fast-strong-comm.update=sharded.dat' using 8:xtic(stringcolumn(1).(column(5)==1?'*':'')) lc rgb '#7f7f7f' title 'data', '/work/main/launch/scaling.d/results/round2-median/fast-strong/plotdata/smpi-fast-strong-comm.update=sharded.dat' using 9:xtic(stringcolumn(1).(column(5)==1?'*':'')) lc rgb '#1f77b4' title 'forward', '/work/main/launch/scaling.d/results/round2-median/fast-strong/plotdata/smpi-fast-strong-comm.update=sharded.dat' using 10:xtic(stringcolumn(1).(column(5)==1?'*':'')) lc rgb '#2ca02c' title 'backward', '/work/main/launch/scaling.d/results/round2-median/fast-strong/plotdata/smpi-fast-strong-comm.update=sharded.dat' using 11:xtic(stringcolumn(1).(column(5)==1?'*':'')) lc rgb '#d62728' title 'communication', '/work/main/launch/scaling.d/results/round2-median/fast-strong/plotdata/smpi-fast-strong-comm.update=sharded.dat' using 12:xtic(stringcolumn(1).(column(5)==1?'*':'')) lc rgb '#ff7f0e' title 'optimizer'
